"""The feature store: ingest paths, idempotence, atomicity, point-in-time sets, splits, lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recengine.feature_store import FeatureStore, StoreLockedError, StoreSchema, UnknownEntitiesError
from recengine.feature_store.errors import IngestError
from recengine.feature_store.schema import ColumnType


def test_ml100k_loads_whole(ml100k: Path, store_path: Path) -> None:
    with FeatureStore(store_path) as fs:
        results = fs.ingest_paths([ml100k])
        assert [r.kind for r in results] == ["users", "items", "events"]
        stats = fs.stats()
        assert (stats["users"], stats["items"], stats["events"]) == (943, 1682, 100_000)
        assert stats["event_types"] == {"rating": 100_000}
        items = fs.latest("items")
        toy_story = items.filter(pl.col("item_id") == "1").row(0, named=True)
        assert toy_story["title"] == "Toy Story"
        assert toy_story["release_year"] == "1995"
        assert toy_story["class"] == ["Animation", "Children's", "Comedy"]
        ratings = fs.sql("SELECT min(value) lo, max(value) hi, min(ts) first FROM events").row(0)
        assert ratings[:2] == (1.0, 5.0)
        assert ratings[2] == datetime(1997, 9, 20, 3, 5, 10)
        assert fs.latest("users").filter(pl.col("user_id") == "1")["occupation"].item() == "technician"


def test_reingest_is_idempotent(ml100k: Path, store_path: Path) -> None:
    with FeatureStore(store_path) as fs:
        fs.ingest_paths([ml100k])
        again = fs.ingest_paths([ml100k])
        assert [r.rows_added for r in again] == [0, 0, 0]
        assert fs.stats()["events"] == 100_000


def test_sources_csv_parquet_polars_arrow(tmp_path: Path, store_path: Path, small_frames) -> None:
    users_csv = tmp_path / "users.csv"
    small_frames["users"].write_csv(users_csv)
    items_parquet = tmp_path / "items.parquet"
    small_frames["items"].write_parquet(items_parquet)
    with FeatureStore(store_path) as fs:
        fs.ingest(users_csv)
        fs.ingest(items_parquet)
        fs.ingest(small_frames["events"].head(3))
        fs.ingest(small_frames["events"].tail(3).to_arrow())
        stats = fs.stats()
    assert (stats["users"], stats["items"], stats["events"]) == (3, 4, 6)
    assert stats["user_columns"] == {"age": "int", "city": "string"}


def test_identical_repeats_within_a_file_are_kept_once_per_occurrence(store_path: Path, small_frames) -> None:
    events = pl.concat([small_frames["events"], small_frames["events"].head(1)])
    with FeatureStore(store_path) as fs:
        fs.ingest(small_frames["users"])
        fs.ingest(small_frames["items"])
        assert fs.ingest(events).rows_added == 7
        assert fs.ingest(events).rows_added == 0
        assert fs.ingest(small_frames["events"]).rows_added == 0


def test_unknown_entities_rejected_with_count_and_examples(store_path: Path, small_frames) -> None:
    with FeatureStore(store_path) as fs:
        fs.ingest(small_frames["users"].head(1))
        fs.ingest(small_frames["items"])
        with pytest.raises(UnknownEntitiesError) as caught:
            fs.ingest(small_frames["events"])
        assert caught.value.count == 2 and caught.value.examples == ["u2", "u3"]
        assert "2 event(s) name users not in the store" in str(caught.value)
        assert fs.stats()["events"] == 0
        result = fs.ingest(small_frames["events"], create_missing=True)
        assert result.created_missing == 2 and result.rows_added == 6
        assert fs.stats()["users"] == 3


def test_multi_file_ingest_is_all_or_nothing(tmp_path: Path, store_path: Path, small_frames) -> None:
    small_frames["users"].write_parquet(tmp_path / "users.parquet")
    bad = small_frames["events"].with_columns(pl.col("ts").cast(pl.String))
    bad[2, "ts"] = "not a time"
    bad.write_csv(tmp_path / "events.csv")
    with FeatureStore(store_path) as fs:
        with pytest.raises(IngestError):
            fs.ingest_paths([tmp_path / "users.parquet", tmp_path / "events.csv"])
        assert fs.stats()["users"] == 0
        # a failure discovered inside the transaction (unknown items) also rolls back the users
        small_frames["events"].write_parquet(tmp_path / "events.parquet")
        with pytest.raises(UnknownEntitiesError):
            fs.ingest_paths([tmp_path / "users.parquet", tmp_path / "events.parquet"])
        assert fs.stats()["users"] == 0


def test_domain_schema_is_enforced(store_path: Path, small_frames) -> None:
    schema = StoreSchema(name="shop", open=False, user_columns={"age": ColumnType.int},
                         item_columns={"category": ColumnType.string}, event_types=["view", "purchase"])
    with FeatureStore(store_path, schema=schema) as fs:
        with pytest.raises(IngestError, match=r"column\(s\) \['city'\] are not declared for users"):
            fs.ingest(small_frames["users"])
        fs.ingest(small_frames["users"].drop("city"))
        fs.ingest(small_frames["items"])
        with pytest.raises(IngestError, match="unknown event type 'click'"):
            fs.ingest(small_frames["events"].with_columns(pl.lit("click").alias("event_type")))
    with pytest.raises(Exception, match="created for the 'shop' schema"):
        FeatureStore(store_path, schema=StoreSchema(name="other"))


def test_timestamps_iso_seconds_and_milliseconds_agree(store_path: Path, small_frames) -> None:
    instant = datetime(2024, 5, 1, 12, 0, 0)
    forms = ["2024-05-01T12:00:00Z", "2024-05-01 14:00:00+02:00", "1714564800", "1714564800000"]
    events = pl.DataFrame({"user_id": ["u1"] * 4, "item_id": ["i1", "i2", "i3", "i4"], "ts": forms})
    with FeatureStore(store_path) as fs:
        fs.ingest(small_frames["users"])
        fs.ingest(small_frames["items"])
        fs.ingest(events)
        assert fs.sql("SELECT DISTINCT ts FROM events")["ts"].to_list() == [instant]


def test_training_set_is_point_in_time_correct(store_path: Path, small_frames) -> None:
    versions = pl.DataFrame({
        "user_id": ["u1", "u1"], "age": [30, 31], "city": ["a", "z"],
        "valid_from": [datetime(1970, 1, 1), datetime(2024, 1, 1, 2, 30)],
    })
    with FeatureStore(store_path) as fs:
        fs.ingest(small_frames["users"].filter(pl.col("user_id") != "u1"))
        fs.ingest(versions)
        fs.ingest(small_frames["items"])
        fs.ingest(small_frames["events"])
        rows = fs.training_set(history=2).filter(pl.col("user_id") == "u1").sort("ts")
    assert rows["user_city"].to_list() == ["a", "a", "z"]  # the move happened at 02:30
    assert rows["history"].to_list() == [[], ["i1"], ["i1", "i2"]]  # never a later item
    assert rows["item_title"].to_list() == ["Red shoe", "Blue shoe", "Green hat"]


def test_training_set_to_parquet(store_path: Path, tmp_path: Path, small_frames) -> None:
    with FeatureStore(store_path) as fs:
        for kind in ("users", "items", "events"):
            fs.ingest(small_frames[kind])
        path = fs.training_set(history=3, out=tmp_path / "train.parquet")
    assert pl.read_parquet(path).height == 6


def _sequence_store(store_path: Path) -> FeatureStore:
    """Two users; user a's last two events share a second, so file order breaks the tie."""
    same = datetime(2024, 1, 1, 12)
    events = pl.DataFrame({
        "user_id": ["a"] * 5 + ["b"] * 2,
        "item_id": ["1", "2", "3", "5", "4", "1", "2"],
        "ts": [datetime(2024, 1, 1, h) for h in (1, 2, 3)] + [same, same]
              + [datetime(2024, 1, 1, 1), datetime(2024, 1, 1, 2)],
    })
    fs = FeatureStore(store_path)
    fs.ingest(events, create_missing=True)
    return fs


def test_seq_split_is_leave_one_out_with_stable_ties(store_path: Path) -> None:
    with _sequence_store(store_path) as fs:
        split = fs.split("seq")
    a = split.filter(pl.col("user_id") == "a")
    assert a.filter(pl.col("split") == "test")["item_id"].to_list() == ["4"]  # later in the file
    assert a.filter(pl.col("split") == "valid")["item_id"].to_list() == ["5"]
    assert split.filter(pl.col("user_id") == "b")["split"].to_list() == ["train", "train"]


def test_gen_split_is_seeded_80_10_10(ml100k: Path, store_path: Path) -> None:
    with FeatureStore(store_path) as fs:
        fs.ingest_paths([ml100k])
        first = fs.split("gen", seed=2020)
        again = fs.split("gen", seed=2020)
        other = fs.split("gen", seed=7)
    assert first.equals(again)
    assert not first["split"].equals(other["split"])
    per_user = first.group_by("user_id").agg(
        n=pl.len(), test=(pl.col("split") == "test").sum(), valid=(pl.col("split") == "valid").sum())
    expected = (per_user["n"] * 0.1).floor().cast(pl.UInt32)
    assert (per_user["test"] == expected).all() and (per_user["valid"] == expected).all()


def test_cold_split_holds_out_whole_items(ml100k: Path, store_path: Path) -> None:
    with FeatureStore(store_path) as fs:
        fs.ingest_paths([ml100k])
        split = fs.split("cold", seed=1)
    items = {phase: set(split.filter(pl.col("split") == phase)["item_id"]) for phase in ("train", "valid", "test")}
    assert not items["test"] & items["train"] and not items["valid"] & items["train"]
    assert not items["test"] & items["valid"]
    assert abs(len(items["test"]) - 168) <= 1 and abs(len(items["valid"]) - 168) <= 1  # 10% of 1,682 items each


def test_second_writer_gets_locked_by_pid(store_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from recengine.feature_store import FeatureStore
            fs = FeatureStore({str(store_path)!r})
            print("ready", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match=rf"locked by PID {holder.pid}"):
            FeatureStore(store_path)
    finally:
        holder.communicate("\n", timeout=30)


def test_item_vectors_validated(store_path: Path, small_frames) -> None:
    with FeatureStore(store_path) as fs:
        fs.ingest(small_frames["items"])
        fs.write_vectors("text", ["i1", "i2"], np.ones((2, 4)))
        ids, matrix = fs.read_vectors("text")
        assert ids == ["i1", "i2"] and matrix.shape == (2, 4)
        with pytest.raises(IngestError, match="dimension 3"):
            fs.write_vectors("text", ["i3"], np.ones((1, 3)))
        with pytest.raises(IngestError, match="NaN"):
            fs.write_vectors("text", ["i3"], np.array([[1.0, np.nan, 0, 0]]))
        with pytest.raises(UnknownEntitiesError, match="nope"):
            fs.write_vectors("text", ["nope"], np.ones((1, 4)))
        assert fs.stats()["vector_sets"] == {"text": 4}


def test_transaction_commits_on_success_and_rolls_back_on_error(store_path: Path, small_frames) -> None:
    with FeatureStore(store_path) as fs:
        with fs.transaction() as con:
            con.execute("INSERT INTO users (user_id, valid_from) VALUES ('u9', TIMESTAMP '2024-01-01')")
        with pytest.raises(RuntimeError, match="boom"):
            with fs.transaction() as con:
                con.execute("DELETE FROM users")
                raise RuntimeError("boom")
        assert fs.sql("SELECT user_id FROM users")["user_id"].to_list() == ["u9"]
        # no transaction was left open (the users table holds u9: age and city are new columns)
        fs.ingest(small_frames["users"], allow_new_columns=True)
        assert fs.stats()["users"] == 4


def test_snapshot_module_does_not_depend_on_the_store(store_path: Path, tmp_path: Path, small_frames) -> None:
    """``snapshot`` works on a connection, a schema and a directory, not on ``FeatureStore``."""
    import ast

    from recengine.feature_store import snapshot

    tree = ast.parse(Path(snapshot.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "recengine.feature_store.store" not in imported  # not even under TYPE_CHECKING
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert "FeatureStore" not in names

    # nor at run time, through what it imports (the package __init__, which imports the store
    # itself, is skipped: the package's modules are loaded without it in a fresh interpreter)
    code = textwrap.dedent("""
        import importlib.util, sys, types
        spec = importlib.util.find_spec("recengine.feature_store")
        package = types.ModuleType("recengine.feature_store")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["recengine.feature_store"] = package
        import recengine.feature_store.snapshot
        print("recengine.feature_store.store" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"

    # what it needs is public: a connection in one of the store's transactions and its schema
    with FeatureStore(store_path) as fs:
        fs.ingest(small_frames["users"])
        with fs.transaction() as con:
            info = snapshot.export_snapshot(con, tmp_path / "snaps", fs.schema, history=5)
        assert (info.version, info.counts["users"], info.history) == (1, 3, 5)
        assert fs.stats()["snapshot_version"] == 1


def test_failed_snapshot_export_leaves_no_version_and_store_usable(
        store_path: Path, tmp_path: Path, small_frames, monkeypatch: pytest.MonkeyPatch) -> None:
    from recengine.feature_store import snapshot

    real_run = snapshot.run

    def failing_run(con, sql, params=None):
        if "seen.parquet" in sql:  # the last table: every other file is already written
            raise OSError("disk full")
        return real_run(con, sql, params)

    root = tmp_path / "snaps"
    with FeatureStore(store_path) as fs:
        for kind in ("users", "items", "events"):
            fs.ingest(small_frames[kind])
        monkeypatch.setattr(snapshot, "run", failing_run)
        with pytest.raises(OSError, match="disk full"):
            fs.publish(root)
        assert list(root.iterdir()) == []  # no version, no staging directory, no CURRENT
        assert fs.stats()["snapshot_version"] == 0

        monkeypatch.setattr(snapshot, "run", real_run)
        fs.ingest(small_frames["events"].with_columns(pl.col("ts").dt.offset_by("1d")))
        info = fs.publish(root)
        assert info.version == 1 and info.counts["events"] == 12
        assert snapshot.current_version_dir(root) == root / "v000001"
        assert [s.version for s in snapshot.list_snapshots(root)] == [1]
        assert fs.stats()["snapshot_version"] == 1
