"""Snapshots: numbered, complete, published atomically; online lookups swap versions whole."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recengine.feature_store import FeatureStore, OnlineStore, StoreError
from recengine.feature_store.snapshot import list_snapshots


@pytest.fixture
def filled(store_path: Path, small_frames) -> FeatureStore:
    fs = FeatureStore(store_path)
    for kind in ("users", "items", "events"):
        fs.ingest(small_frames[kind])
    fs.write_vectors("text", ["i1", "i2", "i3", "i4"], np.eye(4))
    yield fs
    fs.close()


def test_export_writes_numbered_complete_versions(filled: FeatureStore, tmp_path: Path) -> None:
    first = filled.export_snapshot(tmp_path / "snaps")
    second = filled.export_snapshot(tmp_path / "snaps")
    assert (first.version, second.version) == (1, 2)
    assert first.counts == {"users": 3, "items": 4, "events": 6, "item_vectors": 4, "histories": 3, "seen": 3}
    assert [s.version for s in list_snapshots(tmp_path / "snaps")] == [1, 2]
    events = pl.read_parquet(Path(first.path) / "events.parquet")
    assert events.height == 6 and "seq" in events.columns


def test_recreated_store_publishes_after_existing_versions(filled: FeatureStore, tmp_path: Path,
                                                           small_frames) -> None:
    """A store rebuilt in place (as `quickstart` does) must not collide with published versions."""
    root = tmp_path / "snaps"
    filled.publish(root)
    filled.publish(root)
    fresh = FeatureStore(tmp_path / "fresh.duckdb")
    for kind in ("users", "items", "events"):
        fresh.ingest(small_frames[kind])
    info = fresh.publish(root)
    fresh.close()
    assert info.version == 3
    assert (root / "CURRENT").read_text().strip() == "v000003"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_online_lookups_from_published_snapshot(filled: FeatureStore, tmp_path: Path) -> None:
    root = tmp_path / "snaps"
    with pytest.raises(StoreError, match="no published snapshot"):
        OnlineStore(root)
    filled.publish(root)
    online = OnlineStore(root)
    user = online.user("u1")
    assert user.attributes == {"age": 30, "city": "a"}
    assert user.history == ["i1", "i2", "i3"]  # oldest first
    assert online.seen("u1") == ["i1", "i2", "i3"] and online.seen("u1", ["purchase"]) == []
    assert online.user("nobody") is None
    assert online.item("i3")["title"] == "Green hat"
    assert online.items(["i4", "zzz", "i1"])["item_id"].to_list() == ["i4", "i1"]
    vectors = online.item_vectors("text")
    assert vectors.matrix.shape == (4, 4) and vectors.matrix[vectors.index["i2"]][1] == 1.0
    with pytest.raises(KeyError, match="no item vectors named 'image'"):
        online.item_vectors("image")


def test_refresh_swaps_to_newer_snapshot_whole(filled: FeatureStore, tmp_path: Path, small_frames) -> None:
    root = tmp_path / "snaps"
    filled.publish(root)
    online = OnlineStore(root)
    assert online.refresh() is False
    filled.ingest(pl.DataFrame({"user_id": ["u4"], "age": [60], "city": ["d"]}))
    seen: list[tuple[int, bool]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = online.data  # one consistent version per "request"
            seen.append((data.version, "u4" in data.user_index))

    thread = threading.Thread(target=reader)
    thread.start()
    filled.publish(root)
    assert online.refresh() is True
    stop.set()
    thread.join()
    assert online.version == 2 and online.user("u4").attributes["age"] == 60
    assert all(has_u4 == (version == 2) for version, has_u4 in seen)


def test_publish_existing_version(filled: FeatureStore, tmp_path: Path) -> None:
    root = tmp_path / "snaps"
    filled.export_snapshot(root)
    filled.export_snapshot(root)
    filled.publish(root, version=1)
    assert OnlineStore(root).version == 1
    with pytest.raises(StoreError, match="v000009"):
        filled.publish(root, version=9)
