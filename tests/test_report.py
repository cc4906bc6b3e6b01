"""Evaluation reports through the CLI a user runs: ``recengine evaluate MODEL --report DIR
[--compare B]`` and ``recengine compare A B``, on tiny trained bundles (and ml-100k where the
shared data is present)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from recengine.cli import cli
from recengine.config import PipelineConfig
from recengine.feature_store import FeatureStore
from recengine.pipeline import train_pipeline
from tests.conftest import MF_OVERRIDES, generated_shop

FIGURES = ("curves.png", "segments.png", "deciles.png", "popularity_bias.png")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated store with two bundles trained on the same (gen) split: MF-BPR and a
    transformer over the dense item tower (both a few seconds)."""
    base = tmp_path_factory.mktemp("report-shop")
    generated_shop(base, 300, 200, 12_000, 3)
    store, models = base / "store.duckdb", base / "models"
    mf = PipelineConfig(name="mf", domain="ecommerce").with_overrides({**MF_OVERRIDES, "train.epochs": 3,
                                                                      "train.batch_size": 512})
    train_pipeline(store, mf, models, progress=False)
    sequence = PipelineConfig(name="seq", domain="ecommerce").with_overrides({
        "model.user_encoder": {"name": "transformer", "params": {"layers": 1, "heads": 1}}, "model.dim": 16,
        "model.max_history": 10, "train.protocol": "gen", "train.epochs": 2, "train.batch_size": 256})
    train_pipeline(store, sequence, models, progress=False)
    return base


def run(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


class References(HTMLParser):
    """Every URL-valued attribute of the page (src, href, and url() would need CSS: none is used)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "srcset", "data") and value]


def check_report(directory: Path, bundles: list[str]) -> dict:
    """Every figure is a real PNG of plausible size, the page references only files it wrote
    (nothing remote), and report.json holds every run."""
    expected = {*FIGURES, *(f"training-{label.replace('/', '-')}.png" for label in bundles)}
    written = {path.name for path in directory.iterdir()}
    assert expected <= written, f"missing figures: {expected - written}"
    for name in expected:
        with Image.open(directory / name) as image:
            image.verify()  # a valid PNG, not just a file with the name
        with Image.open(directory / name) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert 500 <= width <= 3000 and 300 <= height <= 2000, (name, image.size)
        assert (directory / name).stat().st_size > 10_000, name  # something was drawn
    page = (directory / "index.html").read_text(encoding="utf-8")
    parser = References()
    parser.feed(page)
    assert sorted(set(parser.urls)) == sorted(expected), "the page must reference exactly the figures it wrote"
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "<table>" in page and "ndcg@10" in page and "gauc" in page and "coverage@10" in page
    report = json.loads((directory / "report.json").read_text())
    assert [run["label"] for run in report["runs"]] == [*bundles, "popularity"]
    return report


def test_evaluate_report_with_compare(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run(["evaluate", "mf", "--store", str(shop / "store.duckdb"), "--models", str(shop / "models"),
                  "--compare", "seq/1", "--report", str(out), "--segments", "30,45"])
    assert result.exit_code == 0, result.output
    assert "Report written to" in result.output and "Paired per-user ndcg@10" in result.output
    report = check_report(out, ["mf/1", "seq/1"])
    mf, seq, popularity = report["runs"]
    # the numbers are the bundle's own evaluation, reproduced from its manifest's split
    assert mf["info"]["split_check"]["reproduced"] is True
    assert mf["metrics"]["ndcg@10"] == pytest.approx(mf["info"]["trained_test"]["ndcg@10"], abs=1e-6)
    for run_ in (mf, seq, popularity):
        metrics = run_["metrics"]
        assert 0 <= metrics["ndcg@10"] <= 1 and 0.5 <= metrics["gauc"] <= 1
        assert 0 < metrics["coverage@10"] <= 1 and 0 <= metrics["gini@10"] < 1
        assert len(run_["curves"]["recall"]) == 50
        assert run_["curves"]["recall"] == sorted(run_["curves"]["recall"])  # recall@K never falls with K
        assert sum(s["users"] for s in run_["segments"]) == report["split"]["test_users"]
        assert [s["segment"] for s in run_["segments"]] == ["cold", "light", "heavy"]
    # popularity always shows the same items: the least coverage
    assert popularity["metrics"]["coverage@10"] < mf["metrics"]["coverage@10"]
    assert report["segment_edges"] == [30, 45]
    paired = {row["run"]: row for row in report["paired"]}
    assert set(paired) == {"seq/1", "popularity"}
    for row in paired.values():
        assert row["users"] == report["split"]["test_users"]
        assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]
        assert 0 <= row["t_pvalue"] <= 1 and 0 <= row["wilcoxon_pvalue"] <= 1


def test_compare_prints_tables_and_json(shop: Path, tmp_path: Path) -> None:
    base = ["--store", str(shop / "store.duckdb"), "--models", str(shop / "models")]
    result = run(["compare", "seq", "mf/1", *base, "--report", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    check_report(tmp_path / "cmp", ["seq/1", "mf/1"])
    result = run(["compare", "seq", "mf/1", *base, "--json", "--paired-metric", "recall@20"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["page"] is None and data["paired_metric"] == "recall@20"
    assert [row["run"] for row in data["paired"]] == ["mf/1", "popularity"]


def test_report_refuses_bad_requests_with_reasons(shop: Path, tmp_path: Path) -> None:
    base = ["--store", str(shop / "store.duckdb"), "--models", str(shop / "models")]
    cases = [
        (["compare", "mf", *base], 1, "two or more bundles"),
        (["compare", "mf", "mf/1", *base], 1, "given twice"),
        (["compare", "mf", "nope", *base], 1, "no model bundle 'nope'"),
        (["evaluate", "mf", *base, "--report", str(tmp_path / "r"), "--segments", "50,10"], 2, "increasing"),
        (["evaluate", "mf", *base, "--report", str(tmp_path / "r"), "--paired-metric", "auc"], 2, "ndcg@10"),
        (["evaluate", "mf", *base, "--report", str(tmp_path / "r"), "--tail", "1.5"], 2, "--tail"),
        (["evaluate", "mf", *base, "--report", str(tmp_path / "r"), "--protocol", "rating"], 1, "rating protocol"),
    ]
    for args, code, message in cases:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()  # nothing half-written by a refused report


def test_report_on_an_evolved_store_says_so(shop: Path, tmp_path: Path) -> None:
    """The manifest's split fingerprint tells a reproduced evaluation from a store that moved on."""
    import shutil

    store = tmp_path / "store.duckdb"
    shutil.copy(shop / "store.duckdb", store)
    with FeatureStore(store) as live:
        users = live.sql("SELECT user_id FROM users ORDER BY user_id LIMIT 40")["user_id"].to_list()
        items = live.sql("SELECT item_id FROM items ORDER BY item_id LIMIT 40")["item_id"].to_list()
        from datetime import datetime

        import polars as pl

        live.ingest(pl.DataFrame({"user_id": users, "item_id": items[::-1], "event_type": ["purchase"] * 40,
                                  "ts": [datetime(2031, 1, 1)] * 40}), kind="events")
    result = run(["evaluate", "mf", "--store", str(store), "--models", str(shop / "models"), "--report",
                  str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    check = json.loads(result.output)["runs"][0]["info"]["split_check"]
    assert check["reproduced"] is False and "changed since training" in check["verdict"]


def test_report_on_ml100k(ml100k: Path, tmp_path: Path) -> None:
    """Real data: a dense pipeline against popularity on ml-100k's leave-one-out split."""
    store, models = tmp_path / "ml.duckdb", tmp_path / "models"
    with FeatureStore(store) as fs:
        fs.ingest_paths([ml100k])
    config = PipelineConfig(name="ml-dense").with_overrides({**MF_OVERRIDES, "train.protocol": "seq",
                                                             "train.epochs": 2, "train.batch_size": 1024})
    train_pipeline(store, config, models, progress=False)
    out = tmp_path / "report"
    result = run(["evaluate", "ml-dense", "--store", str(store), "--models", str(models), "--report", str(out)])
    assert result.exit_code == 0, result.output
    report = check_report(out, ["ml-dense/1"])
    assert report["split"]["test_users"] == 943
    model, popularity = report["runs"]
    # MF spreads its lists over far more of the catalogue than the popularity list does
    assert model["metrics"]["coverage@10"] > 2 * popularity["metrics"]["coverage@10"]
    assert model["metrics"]["novelty@10"] > popularity["metrics"]["novelty@10"]


def test_report_page_loads_in_a_browser_fetching_only_its_own_figures(shop: Path, tmp_path: Path) -> None:
    """Headless Chromium opens the page from a local static server that records every request:
    each figure is fetched (200) and nothing else is asked for (no CDN, no script)."""
    import functools
    import http.server
    import threading

    from benchmarks.dashboard_screenshot import find_browser, run_browser

    browser = find_browser()
    if browser is None:
        pytest.skip("needs a headless Chromium on PATH (Debian: apt-get install chromium; .ci/run has it)")
    out = tmp_path / "report"
    result = run(["evaluate", "mf", "--store", str(shop / "store.duckdb"), "--models", str(shop / "models"),
                  "--report", str(out)])
    assert result.exit_code == 0, result.output
    requests: list[tuple[str, int]] = []

    class Recording(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            requests.append((self.path, int(code)))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Recording, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dom = run_browser(browser, f"http://127.0.0.1:{server.server_port}/index.html", dump_dom=True,
                          budget_ms=3000)
    finally:
        server.shutdown()
    assert "Evaluation report: mf/1" in dom and "Paired comparison" in dom
    asked = {path: code for path, code in requests if path != "/favicon.ico"}
    expected = {"/index.html", *(f"/{name}" for name in (*FIGURES, "training-mf-1.png"))}
    assert set(asked) == expected, f"the page fetched {sorted(asked)}"
    assert all(code == 200 for code in asked.values()), asked


def test_readme_quotes_the_recorded_ml100k_report() -> None:
    """The README's report figures are the ones benchmarks/results/report-ml100k/report.json holds
    (regenerate with `bash examples/ml100k/report.sh`, then update the sentence)."""
    import re

    root = Path(__file__).resolve().parents[1]
    report = json.loads((root / "benchmarks/results/report-ml100k/report.json").read_text())
    readme = (root / "README.md").read_text()
    runs = {run["label"]: run["metrics"] for run in report["runs"]}
    ndcg = [f"{runs[label]['ndcg@10']:.3f}" for label in ("ml-sasrec/1", "ml-dense/1", "popularity")]
    coverage = [f"{round(runs[label]['coverage@10'] * 100)} %" for label in ("ml-sasrec/1", "ml-dense/1", "popularity")]
    pvalues = [f"{row['t_pvalue']:.0e}".replace("e-0", "e-") for row in report["paired"]]
    sentence = " ".join(re.search(r"SASRec reaches NDCG@10.*?head:", readme, re.S).group(0).split())
    assert f"NDCG@10 {ndcg[0]} against {ndcg[1]} and {ndcg[2]}" in sentence, sentence
    assert f"paired p = {pvalues[0]} and {pvalues[1]}" in sentence, sentence
    assert f"{coverage[0]} of the catalogue in someone's top 10 against {coverage[1]} and {coverage[2]}" in sentence
    for figure in ("curves.png", "deciles.png"):
        assert f"benchmarks/results/report-ml100k/{figure}" in readme
        assert (root / "benchmarks/results/report-ml100k" / figure).is_file()


def test_sampled_users_are_the_same_for_every_run(shop: Path) -> None:
    base = ["--store", str(shop / "store.duckdb"), "--models", str(shop / "models")]
    first = run(["compare", "mf", "seq", *base, "--json", "--sample-users", "40"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    assert data["split"]["test_users"] == 40 and data["split"]["all_test_users"] > 40
    assert any("sample of 40" in note for note in data["notes"])
    assert all(row["users"] == 40 for row in data["paired"])  # every run ranked the same 40 users
    again = json.loads(run(["compare", "mf", "seq", *base, "--json", "--sample-users", "40"]).output)
    assert again["runs"][0]["metrics"] == data["runs"][0]["metrics"]  # seeded: the same sample
    alone = run(["evaluate", "mf", *base, "--json", "--sample-users", "40"])
    assert alone.exit_code == 0 and json.loads(alone.output)["split"]["test_users"] == 40
