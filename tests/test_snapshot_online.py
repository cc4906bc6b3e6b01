"""Snapshots: numbered, complete, published atomically; online lookups swap versions whole."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recengine.feature_store import FeatureStore, OnlineStore, StoreError
from recengine.feature_store import online as online_module
from recengine.feature_store.online import MIN_SEGMENT_USERS, Segment
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
    assert first.counts == {"users": 3, "items": 4, "events": 6, "item_vectors": 4, "histories": 3, "seen": 3,
                            "searches": 0, "query_vectors": 0}
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


@pytest.fixture
def segmented(store_path: Path, tmp_path: Path) -> OnlineStore:
    """60 users: gender F (u00-u29) / M (u30-u59); occupation student (u00-u23, all F),
    artist (u24-u47: 6 F, 18 M), doctor (u48-u59); team red (u00-u09 and every M), blue,
    green or gold (F). Everyone viewed i1, students i2 too, even-numbered users i3 as well."""
    assert MIN_SEGMENT_USERS == 20  # the group sizes below straddle it
    ids = [f"u{n:02d}" for n in range(60)]
    occupation = ["student"] * 24 + ["artist"] * 24 + ["doctor"] * 12
    team = ["red"] * 10 + ["blue"] * 10 + ["green"] * 5 + ["gold"] * 5 + ["red"] * 30
    users = pl.DataFrame({"user_id": ids, "gender": ["F"] * 30 + ["M"] * 30, "occupation": occupation,
                          "team": team, "age": list(range(20, 80))})
    items = pl.DataFrame({"item_id": ["i1", "i2", "i3"], "title": ["One", "Two", "Three"]})
    viewed = [(user, "i1") for user in ids]
    viewed += [(user, "i2") for user, job in zip(ids, occupation) if job == "student"]
    viewed += [(user, "i3") for n, user in enumerate(ids) if n % 2 == 0]
    t0 = datetime(2024, 1, 1)
    events = pl.DataFrame({"user_id": [u for u, _ in viewed], "item_id": [i for _, i in viewed],
                           "event_type": ["view"] * len(viewed), "value": [1.0] * len(viewed),
                           "ts": [t0 + timedelta(minutes=m) for m in range(len(viewed))]})
    with FeatureStore(store_path) as store:
        for frame in (users, items, events):
            store.ingest(frame)
        store.publish(tmp_path / "snaps")
    return OnlineStore(tmp_path / "snaps")


def test_user_segment_narrows_coarse_to_fine_while_enough_users_remain(segmented: OnlineStore) -> None:
    # gender (2 values) before occupation (3): F keeps 30 users, F + student 24
    student = segmented.user_segment({"occupation": "student", "gender": "F", "age": 25})
    assert student == Segment((("gender", "F"), ("occupation", "student")))
    assert student.description == "gender: F, occupation: student"
    # M + artist would leave 18 users (< 20): occupation is skipped, and the finer team still applies
    assert segmented.user_segment({"gender": "M", "occupation": "artist"}) == Segment((("gender", "M"),))
    assert segmented.user_segment({"team": "red", "gender": "M", "occupation": "artist"}) == \
        Segment((("gender", "M"), ("team", "red")))
    # 12 doctors are too few for a segment of their own
    assert segmented.user_segment({"occupation": "doctor"}) is None
    # numbers, missing values and columns the snapshot lacks never define a segment
    assert segmented.user_segment({"age": 25, "gender": None, "city": "x"}) is None


def test_user_segment_ignores_attributes_with_too_many_values(segmented: OnlineStore, monkeypatch) -> None:
    monkeypatch.setattr(online_module, "MAX_SEGMENT_VALUES", 2)  # occupation's 3 values: too many
    assert segmented.user_segment({"gender": "F", "occupation": "student"}) == Segment((("gender", "F"),))


def test_segment_popularity_counts_members_history_items_best_first(segmented: OnlineStore) -> None:
    students = segmented.segment_popularity(Segment((("gender", "F"), ("occupation", "student"))))
    assert students.item_ids == ["i1", "i2", "i3"]  # i1 and i2 tie at 24: by item id
    assert students.counts.tolist() == [24, 24, 12]
    men = segmented.segment_popularity(Segment((("gender", "M"),)))
    assert men.item_ids == ["i1", "i3"] and men.counts.tolist() == [30, 15]  # no man viewed i2
    assert men.segment.description == "gender: M"
