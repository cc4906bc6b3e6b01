"""The store CLI as a user runs it: init, ingest, stats, export, publish, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from recengine.cli import cli


def _run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_ingest_stats_publish(tmp_path: Path, small_frames) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for kind, frame in small_frames.items():
        frame.write_parquet(data / f"{kind}.parquet")
    store = str(tmp_path / "s.duckdb")
    result = _run("store", "ingest", str(data), "--store", store, "--json")
    assert result.exit_code == 0, result.output
    assert [r["rows_added"] for r in json.loads(result.output)] == [3, 4, 6]
    stats = json.loads(_run("store", "stats", "--json", env={"RECENGINE_STORE": store}).output)
    assert (stats["users"], stats["items"], stats["events"]) == (3, 4, 6)
    table = _run("store", "stats", "--store", store).output
    assert "events" in table and "6" in table
    published = json.loads(_run("store", "publish", "--store", store, "--json").output)
    assert published["version"] == 1 and Path(published["path"]).is_dir()


def test_bad_file_is_one_clear_message_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "events.csv"
    bad.write_text("user_id,item_id,ts\nu1,i1,never\n")
    result = _run("store", "ingest", str(bad), "--store", str(tmp_path / "s.duckdb"))
    assert result.exit_code == 1
    assert "line 2, column 'ts'" in result.output and "Traceback" not in result.output


def test_stats_of_missing_store(tmp_path: Path) -> None:
    result = _run("store", "stats", "--store", str(tmp_path / "none.duckdb"))
    assert result.exit_code == 1 and "does not exist" in result.output


def test_ml100k_through_cli(ml100k: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "ml.duckdb")
    assert _run("store", "ingest", str(ml100k), "--store", store).exit_code == 0
    stats = json.loads(_run("store", "stats", "--json", "--store", store).output)
    assert (stats["users"], stats["items"], stats["events"]) == (943, 1682, 100_000)


def test_data_generate_then_ingest(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    result = _run("data", "generate", "--domain", "video", "--users", "50", "--items", "40", "--events", "500",
                  "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["events.parquet", "items.parquet", "users.parquet"]
    store = str(tmp_path / "v.duckdb")
    assert _run("store", "init", "--domain", "video", "--store", store).exit_code == 0
    assert _run("store", "ingest", str(out), "--store", store).exit_code == 0
    assert json.loads(_run("store", "stats", "--json", "--store", store).output)["events"] == 500
    bad = _run("data", "generate", "--domain", "music", "--out", str(out))
    assert bad.exit_code == 1 and "known domains: ecommerce, news, social, video" in bad.output


def test_locked_store_message_through_cli(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    store = tmp_path / "locked.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from recengine.feature_store import FeatureStore
        fs = FeatureStore({str(store)!r})
        print("ready", flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = _run("store", "stats", "--store", str(store))
        assert result.exit_code == 1 and f"locked by PID {holder.pid}" in result.output
        assert "Traceback" not in result.output
    finally:
        holder.communicate("\n", timeout=30)


def test_ingest_refusals_name_the_flag_that_makes_them_explicit(tmp_path: Path) -> None:
    from recengine.feature_store import FeatureStore

    store = str(tmp_path / "s.duckdb")

    def ingest(text: str, *flags: str):
        path = tmp_path / "file.csv"
        path.write_text(text)
        return _run("store", "ingest", str(path), "--store", store, *flags)

    def user() -> dict:
        with FeatureStore(store, read_only=True) as fs:
            return fs.latest("users").drop("valid_from").row(0, named=True)

    assert ingest("user_id,age,city\nu1,30,a\n").exit_code == 0
    looks_like_events = ingest("user_id,ts\nu1,1700000000\n")
    assert looks_like_events.exit_code == 1 and "no item_id" in looks_like_events.output
    assert "--kind" in looks_like_events.output and "Traceback" not in looks_like_events.output
    widening = ingest("user_id,ts\nu1,1700000000\n", "--kind", "users")
    assert widening.exit_code == 1 and "would add column(s) ['ts'] to the users table" in widening.output
    assert "--allow-new-columns" in widening.output
    assert user() == {"user_id": "u1", "age": 30, "city": "a"}  # neither refusal changed it
    assert ingest("user_id,ts\nu1,1700000000\n", "--kind", "users", "--allow-new-columns").exit_code == 0
    assert user() == {"user_id": "u1", "age": 30, "city": "a", "ts": 1700000000}
    assert ingest("user_id,age\nu1,31\n").exit_code == 0  # a partial update
    assert user() == {"user_id": "u1", "age": 31, "city": "a", "ts": 1700000000}
    assert ingest("user_id,age\nu1,32\n", "--replace").exit_code == 0
    assert user() == {"user_id": "u1", "age": 32, "city": None, "ts": None}
