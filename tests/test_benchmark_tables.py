"""docs/benchmarks.md and the README's headline table are what ``benchmarks/results/*.json`` give.

A benchmark re-run without ``python -m benchmarks.tables`` (``make bench-docs``) fails here, and so
does a link in the README or docs/ that points nowhere, or a reliability promise naming a test
that does not exist. Everything runs on the checked-in JSON files: no benchmark is run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.tables import RENDERERS, build
from benchmarks.tables.document import anchor
from benchmarks.tables.serve_load import render as render_serve_load

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def run_tables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks.tables", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_docs_and_readme_headline_are_up_to_date_with_the_results() -> None:
    done = run_tables("--check")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "generic section" not in done.stdout, f"a results file has no renderer:\n{done.stdout}"


def test_check_fails_naming_the_stale_file_when_a_figure_changes(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    load = json.loads((results / "serve_load.json").read_text())
    load["levels"][0]["ours"]["p99_ms"] = 99.9  # as if serve_load had been run again
    (results / "serve_load.json").write_text(json.dumps(load))
    done = run_tables("--check", "--results", str(results))
    assert done.returncode == 1
    assert "docs/benchmarks.md is stale" in done.stderr
    assert "99.9 ms" in done.stderr  # the diff shows the new figure
    assert "README.md is stale" not in done.stderr  # that level is not a headline figure


def test_write_mode_writes_the_page_and_the_readme_block(tmp_path: Path) -> None:
    out, readme = tmp_path / "benchmarks.md", tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- benchmarks:headline:start -->\nSTALE ROW\n"
                      "<!-- benchmarks:headline:end -->\n\nafter\n")
    done = run_tables("--out", str(out), "--readme", str(readme))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == (REPO / "docs" / "benchmarks.md").read_text()
    text = readme.read_text()
    assert "STALE ROW" not in text and text.startswith("# x\n") and text.endswith("\nafter\n")
    assert "| benchmark | figure | recengine | same-run baseline | target |" in text
    assert run_tables("--check", "--out", str(out), "--readme", str(readme)).returncode == 0


def test_a_readme_without_the_headline_markers_is_an_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    done = run_tables("--check", "--readme", str(readme))
    assert done.returncode == 1
    assert "headline block" in done.stderr


def test_serve_load_renderer_puts_each_figure_beside_its_baseline_and_ratio() -> None:
    def side(rps: float, p50: float, p99: float, fives: int = 0, timeouts: int = 0) -> dict[str, object]:
        statuses = {"200": 100} | ({"408": timeouts} if timeouts else {}) | ({"503": fives} if fives else {})
        return {"rps": rps, "rps_2xx": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": fives + timeouts,
                "5xx": fives, "statuses": statuses}

    result = {
        "benchmark": "serve_load", "created_at": "2030-01-02T03:04:05+00:00",
        "config": {"wrk_version": "wrk 4.1.0", "items": 1000, "rotated_users": 10, "duration_s": 2, "warmup_s": 1,
                   "k": 10, "replica_num_cpus": 0.25},
        "levels": [
            {"connections": 1, "noop": side(100.0, 5.0, 10.0), "ours": side(80.0, 6.0, 12.0), "p99_ratio": 1.2},
            {"connections": 32, "noop": side(200.0, 100.0, 200.0), "ours": side(150.0, 150.0, 500.0, fives=3),
             "p99_ratio": 2.5},
        ],
        "targets": {"zero_5xx_all_levels": False, "p99_ratio_max": 2.0, "p99_ratio_level": 32, "p99_ratio_at_32": 2.5,
                    "p99_met_at_32": False},
    }
    section = render_serve_load(result)
    assert "| 32 | 200 | 100.0 ms | 200.0 ms | 150 | 150.0 ms | 500.0 ms | 2.50× | 3 (3) | 200: 100, 503: 3 |" \
        in section.body
    assert "p99 at 32 connections 2.50× the no-op's (≤ 2×) ✗ missed" in section.body
    (headline,) = section.headline
    assert headline.ours == "500.0 ms; 3 5xx"
    assert headline.baseline == "no-op Serve deployment 200.0 ms (2.50×)"
    assert headline.target.endswith("✗ missed")


def test_a_results_file_without_a_renderer_gets_a_generic_section_and_is_named(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "gpu_epoch.json").write_text(json.dumps({
        "benchmark": "gpu_epoch", "date": "2030-01-01", "config": {"epochs": 3, "device": "cuda"},
        "cpu_epoch_s": 12.5, "cuda_epoch_s": 0.5, "speedup": 25.0, "targets": {"speedup_min": 10, "met": True}}))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- benchmarks:headline:start -->\n<!-- benchmarks:headline:end -->\n")
    out = tmp_path / "benchmarks.md"
    done = run_tables("--results", str(results), "--out", str(out), "--readme", str(readme))
    assert done.returncode == 0, done.stderr
    assert "generic section (no renderer in benchmarks/tables/): gpu_epoch.json" in done.stdout
    page = out.read_text()
    assert "## gpu_epoch (no renderer yet)" in page
    assert "| speedup | 25 |" in page and "| met | ✓ met |" in page
    assert "Configuration: epochs = 3; device = cuda." in page


def test_notes_written_for_another_run_are_flagged(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    speed = json.loads((results / "train_speed.json").read_text())
    speed["created"] = "2031-05-05T10:00:00+00:00"
    (results / "train_speed.json").write_text(json.dumps(speed))
    page = build(results).document
    assert "These notes were written about the run of 2026-11-28 13:04 UTC; the tables above are from the run " \
           "of 2031-05-05 10:00 UTC" in page
    done = run_tables("--check", "--results", str(results))
    assert "benchmarks/tables/notes/train_speed.md was written for another run" in done.stdout


def test_every_checked_in_results_file_has_a_renderer_whose_command_exists() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        assert path.stem in RENDERERS, f"{path.name} has no renderer in benchmarks/tables/"
        section = RENDERERS[path.stem](json.loads(path.read_text()))
        for one in section.command.split(";"):  # a section may name several runs, "a; b"
            command = one.split()
            assert command[0] == "python", section.command
            target = (REPO / (command[2].replace(".", "/") + ".py")) if command[1] == "-m" else REPO / command[1]
            assert target.exists(), f"{path.name}: the command `{one}` names {target}, which is missing"
            for flag in (word for word in command if word.startswith("--")):
                assert f'"{flag}"' in target.read_text(), f"{target.name} has no option {flag}"


def test_readme_headline_has_at_most_twelve_rows_each_with_a_baseline() -> None:
    rows = [line for line in build().headline.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert 0 < len(rows) <= 12
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[2] and cells[3], f"a headline row without its figure or baseline: {row}"


MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {anchor(m.group(1).strip()) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in MARKDOWN_LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target} (no {resolved})")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{target} (no heading with anchor #{fragment} in {resolved.name})")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_reliability_table_names_tests_that_exist() -> None:
    section = (REPO / "README.md").read_text().split("## Reliability", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| promise")]
    assert len(rows) >= 10
    for row in rows:
        current: Path | None = None
        for token in re.findall(r"`([^`]+)`", row.rsplit(" | ", 1)[-1]):
            found = re.fullmatch(r"((?:benchmarks/)?[\w/]+\.py)?(?:::(\w+))?", token)
            if found is None or not any(found.groups()):
                continue  # a figure or an option quoted in the cell, not a test
            file, test = found.groups()
            if file:
                current = REPO / file if file.startswith("benchmarks/") else REPO / "tests" / file
                assert current.exists(), f"reliability table names {file}, which does not exist"
            if test:
                assert current is not None, f"{token} names no file"
                assert re.search(rf"def {test}\b", current.read_text()), f"{current.name} has no {test}"
