"""Live writes check unknown ids against the ids the store holds in memory
(``recengine.feature_store.known_ids``), and that set never names an id the store lacks: a
user created in a transaction that rolled back is still unknown, an item posted live or
ingested from a file after the set was read is accepted, and a store too large for the set
falls back to the SQL check with the same answers."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recengine.feature_store import FeatureStore
from recengine.feature_store.errors import StoreError
from recengine.feature_store.known_ids import KnownIds
from recengine.feature_store.live_log import LiveAck, LiveBatch


def event(user: str, item: str) -> dict[str, str]:
    return {"user_id": user, "item_id": item, "event_type": "view"}


@pytest.fixture(params=[None, 0], ids=["ids in memory", "too many ids: SQL only"])
def store(request: pytest.FixtureRequest, tmp_path: Path, small_frames: dict[str, pl.DataFrame]) -> FeatureStore:
    opened = FeatureStore(tmp_path / "s.duckdb")
    for kind in ("users", "items", "events"):
        opened.ingest(small_frames[kind], kind)
    if request.param is not None:
        opened._known_ids = KnownIds(max_ids=request.param)
    return opened


def users_of(store: FeatureStore) -> set[str]:
    return set(store.sql("SELECT DISTINCT user_id FROM users")["user_id"].to_list())


def test_a_user_created_in_a_rolled_back_batch_stays_unknown(store: FeatureStore) -> None:
    store.append_live([LiveBatch("events", [event("u1", "i1")])])  # the ids are read (and held) now
    refused = store.append_live([LiveBatch("events", [event("ghost", "i1"), event("ghost", "no-such-item")])])[0]
    assert isinstance(refused, StoreError) and "no-such-item" in str(refused)
    assert "ghost" not in users_of(store)
    strict = store.append_live([LiveBatch("events", [event("ghost", "i2")], create_users=False)])[0]
    assert isinstance(strict, StoreError) and "ghost" in str(strict)  # not taken for a stored user


def test_one_refused_batch_of_a_group_leaves_its_new_user_unknown(store: FeatureStore) -> None:
    good, bad = store.append_live([LiveBatch("events", [event("newbie", "i1")]),
                                   LiveBatch("events", [event("phantom", "i1"), event("phantom", "nope")])])
    assert isinstance(good, LiveAck) and isinstance(bad, StoreError)
    assert {"newbie"} <= users_of(store) and "phantom" not in users_of(store)
    again = store.append_live([LiveBatch("events", [event("newbie", "i3")], create_users=False),
                               LiveBatch("events", [event("phantom", "i3")], create_users=False)])
    assert isinstance(again[0], LiveAck) and isinstance(again[1], StoreError)


def test_items_posted_or_ingested_later_are_accepted(store: FeatureStore) -> None:
    store.append_live([LiveBatch("events", [event("u1", "i1")])])
    posted = store.append_live([LiveBatch("items", [{"item_id": "fresh", "title": "Fresh hat"}])])[0]
    assert isinstance(posted, LiveAck)
    store.ingest(pl.DataFrame({"item_id": ["from-file"], "title": ["Filed book"], "category": ["books"]}), "items")
    acks = store.append_live([LiveBatch("events", [event("u2", "fresh"), event("u3", "from-file")])])
    assert isinstance(acks[0], LiveAck) and acks[0].accepted == 2
    unknown = store.append_live([LiveBatch("events", [event("u2", "never-posted")])])[0]
    assert isinstance(unknown, StoreError) and "never-posted" in str(unknown)


def test_unknown_users_are_created_once(store: FeatureStore) -> None:
    for _ in range(2):
        ack = store.append_live([LiveBatch("events", [event("visitor", "i1"), event("visitor", "i2")])])[0]
        assert isinstance(ack, LiveAck) and ack.accepted == 2
    rows = store.sql("SELECT count(*) AS n FROM users WHERE user_id = 'visitor'")["n"][0]
    assert rows == 1
