"""The online loop at the store and writer level, and over HTTP in process (no Ray).

A refused batch leaves every table as it was; keys guard writes (and reads when asked);
client event ids make a retry a no-op; one bad batch in a group commit fails alone; what
is posted shows in the next answer; a publish folds the live log into the snapshot.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from recengine.api_keys import ApiKeys
from recengine.cli import cli
from recengine.feature_store import FeatureStore
from recengine.feature_store.errors import IngestError
from recengine.feature_store.live_log import LiveAck, LiveBatch
from recengine.feature_store.snapshot import read_manifest
from recengine.live_overlay import LiveOverlay
from recengine.live_writer import StoreWriter
from recengine.serve.service import RecommendService
from tests.conftest import domain_in_process
from tests.store_contents import assert_same_contents, contents

DOMAIN = "ecommerce"
LIVE_TABLES = ("live_log", "live_event_ids")


@dataclass
class Live:
    """A served ecommerce domain in this process: its writer, service, client and a key."""

    writer: StoreWriter
    service: RecommendService
    client: TestClient
    keys: ApiKeys
    headers: dict[str, str]
    config: dict[str, Any]
    snapshots: Path
    users: list[str]  # users the model trained on
    items: pl.DataFrame  # the catalogue as stored (newest version of each item)

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return self.client.post(path, json=body, headers=self.headers if headers is None else headers)

    def recommend(self, **request: Any) -> list[str]:
        answer = self.client.post("/recommend", json=request)
        assert answer.status_code == 200, answer.text
        return [item["item_id"] for item in answer.json()["items"]]

    def item(self, n: int) -> str:
        return str(self.items["item_id"][n])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with domain_in_process(tmp_path_factory.mktemp("live"), DOMAIN, users=300, items=200, events=5000) as served:
        service = served.service
        users = [u for u in service.recommender.bundle.users.ids if u]
        yield Live(served.writer, service, served.client, ApiKeys(served.keys_file), served.auth, served.config,
                   served.prepared.paths["snapshots"], users, served.writer.store.latest("items"))


def everything(store: FeatureStore) -> dict[str, pl.DataFrame]:
    """Every table of the store, the live log's included."""
    return {**contents(store), **{t: store.sql(f"SELECT * FROM {t} ORDER BY ALL") for t in LIVE_TABLES}}


def event(user: str, item: str, **fields: Any) -> dict[str, Any]:
    return {"user_id": user, "item_id": item, **fields}


def events_of(store: FeatureStore, user: str) -> pl.DataFrame:
    return store.sql("SELECT item_id, event_type FROM events WHERE user_id = ? ORDER BY seq", [user])


# -- refused batches: the right answer, and nothing stored ---------------------------------
def _store_cases(live: Live) -> dict[str, tuple[LiveBatch, int | None, str | None]]:
    """Batches the store's rules refuse: (batch, the record named, the field named)."""
    user, item = live.users[0], live.item(0)
    good = [event(user, live.item(n), event_id=f"store-good-{n}") for n in range(1, 6)]
    return {
        "unknown event type": (LiveBatch("events", [event(user, item, event_type="wishlist")]), 0, "event_type"),
        "bad timestamp": (LiveBatch("events", [event(user, item, ts="yesterday")]), 0, "ts"),
        "unknown item": (LiveBatch("events", [event(user, "no-such-item")]), 0, "item_id"),
        "value not a number": (LiveBatch("events", [event(user, item, value="abc")]), 0, "value"),
        "object as a value": (LiveBatch("items", [{"item_id": item, "brand": {"name": "x"}}]), 0, "brand"),
        "list of objects": (LiveBatch("items", [{"item_id": item, "brand": [{"name": "x"}]}]), 0, "brand"),
        "price not a number": (LiveBatch("items", [{"item_id": item, "price": "cheap"}]), 0, "price"),
        "age not an integer": (LiveBatch("users", [{"user_id": user, "age": "old"}]), 0, "age"),
        "column the schema lacks": (LiveBatch("items", [{"item_id": item, "colour": "red"}]), None, "colour"),
        "event column the schema lacks": (LiveBatch("events", [event(user, item, colour="red")]), None, "colour"),
        "event id twice": (LiveBatch("events", [event(user, item, event_id="twice"),
                                                event(user, live.item(1), event_id="twice")]), 1, "event_id"),
        "event id not a string": (LiveBatch("events", [event(user, item, event_id=7)]), 0, "event_id"),
        "no records": (LiveBatch("events", []), None, None),
        "not a record": (LiveBatch("events", ["u1,i1"]), 0, None),  # type: ignore[list-item]
        "one bad record among good ones": (LiveBatch("events", good[:3] + [event(user, item, ts="never")] + good[3:]),
                                           3, "ts"),
        "one unknown item among good ones": (LiveBatch("events", good[:4] + [event(user, "no-such-item")] + good[4:]),
                                             4, "item_id"),
        "search naming an item": (LiveBatch("events", good[:2] + [event(user, item, query="red shoes")]), 2,
                                  "item_id"),
        "search without text": (LiveBatch("events", [{"user_id": user, "event_type": "search", "query": None}]), 0,
                                "query"),
    }


STORE_CASES = ["unknown event type", "bad timestamp", "unknown item", "value not a number", "object as a value",
               "list of objects", "price not a number", "age not an integer", "column the schema lacks",
               "event column the schema lacks", "event id twice", "event id not a string", "no records",
               "not a record", "one bad record among good ones", "one unknown item among good ones",
               "search naming an item", "search without text"]


@pytest.mark.parametrize("case", STORE_CASES)
def test_writer_refuses_a_bad_batch_and_stores_nothing(live: Live, case: str) -> None:
    batch, record, field = _store_cases(live)[case]
    before, seq = everything(live.writer.store), live.writer.live_state().seq
    answer = live.writer.append(batch, timeout=30)
    assert isinstance(answer, IngestError), answer
    assert (answer.row, answer.column) == (record, field), str(answer)
    assert_same_contents(before, everything(live.writer.store))
    assert live.writer.live_state().seq == seq


def test_posted_searches_are_stored_logged_for_replicas_and_idempotent(live: Live) -> None:
    user, newcomer = live.users[2], "searching-visitor"
    batch = LiveBatch("events", [event(user, live.item(3), event_id="s-1"),
                                 {"user_id": user, "query": "wireless headphones", "event_id": "s-2"},
                                 {"user_id": newcomer, "query": " trail tent ", "event_type": "search",
                                  "event_id": "s-3"}])
    before = live.writer.store.searches([user, newcomer]).height  # the generated shop's shoppers search too
    ack = live.writer.append(batch, timeout=30)
    assert isinstance(ack, LiveAck) and ack.accepted == 3, ack
    assert live.writer.store.searches([newcomer])["query"].to_list() == ["trail tent"]
    assert live.writer.store.searches([user])["query"].to_list()[-1] == "wireless headphones"
    assert events_of(live.writer.store, user)["item_id"].to_list()[-1] == live.item(3)
    again = live.writer.append(batch, timeout=30)  # a retry: nothing twice
    assert isinstance(again, LiveAck) and again.duplicates == 3
    assert live.writer.store.searches([user, newcomer]).height == before + 2
    overlay = LiveOverlay()
    overlay.apply(live.writer.store.changes_since(ack.seq - 1))
    assert overlay.searches(newcomer)[0] == ["trail tent"]
    assert overlay.searches(user)[0] == ["wireless headphones"]
    assert live.item(3) in (overlay.events(user).items if overlay.events(user) else [])


def test_searches_over_http_are_accepted_and_bad_ones_refused_with_a_reason(live: Live) -> None:
    url = "/events"  # the in-process app is the domain's own
    user = live.users[3]
    ok = live.post(url, {"events": [{"user_id": user, "query": "organic olive oil"}]})
    assert ok.status_code == 200, ok.text
    assert "organic olive oil" in live.writer.store.searches([user])["query"].to_list()
    for record, reason in (({"user_id": user}, "names an item_id, or (a search) a query"),
                           ({"user_id": user, "item_id": live.item(0), "query": "x"}, "not both"),
                           ({"user_id": user, "query": "x", "event_type": "view"}, "has event_type 'search'"),
                           ({"user_id": user, "query": "x" * 2000}, "at most 1024")):
        refused = live.post(url, {"events": [record]})
        assert refused.status_code == 422 and reason in refused.text, (record, refused.text)


def test_unknown_item_is_created_only_when_asked(live: Live) -> None:
    user = live.users[1]
    refused = live.writer.append(LiveBatch("events", [event(user, "made-up-item")]), timeout=30)
    assert isinstance(refused, IngestError) and refused.row == 0 and "made-up-item" in str(refused)
    ack = live.writer.append(LiveBatch("events", [event(user, "made-up-item")], create_items=True), timeout=30)
    assert isinstance(ack, LiveAck) and ack.accepted == 1
    assert live.writer.store.sql("SELECT count(*) AS n FROM items WHERE item_id = 'made-up-item'")["n"][0] == 1


def test_values_are_read_as_a_csv_file_holds_them(live: Live) -> None:
    """A number for a text column is its text, text for a number column is parsed (the file rules)."""
    user, item = live.users[2], live.item(2)
    ack = live.writer.append(LiveBatch("items", [{"item_id": item, "brand": 42}]), timeout=30)
    assert isinstance(ack, LiveAck) and ack.accepted == 1
    assert live.writer.store.latest("items").filter(pl.col("item_id") == item)["brand"].to_list() == ["42"]
    ack = live.writer.append(LiveBatch("users", [{"user_id": user, "age": "41"}]), timeout=30)
    assert isinstance(ack, LiveAck)
    assert live.writer.store.latest("users").filter(pl.col("user_id") == user)["age"].to_list() == [41]


def _http_cases(live: Live) -> dict[str, tuple[str, Any, int, str, int | None, str | None]]:
    """Bodies the API refuses: (path, body, status, code, the record named, the field named)."""
    user, item = live.users[0], live.item(0)
    good = [event(user, live.item(n), event_id=f"http-good-{n}") for n in range(1, 6)]
    many = [event(user, item) for _ in range(1001)]
    huge = [{"item_id": f"big-{n}", "description": "x" * 4000} for n in range(300)]  # ~1.2 MB
    return {
        "unknown event type": ("/events", {"events": [event(user, item, event_type="wishlist")]},
                               422, "validation_error", None, None),  # the domain's schema lists its types
        "bad timestamp": ("/events", {"events": [event(user, item, ts="yesterday")]}, 422, "invalid_records", 0, "ts"),
        "unknown item": ("/events", {"events": [event(user, "no-such-item")]}, 422, "invalid_records", 0, "item_id"),
        "value not a number": ("/events", {"events": [event(user, item, value="abc")]},
                               422, "validation_error", None, None),
        "object as a value": ("/items", {"items": [{"item_id": item, "brand": {"name": "x"}}]},
                              422, "validation_error", None, None),
        "price not a number": ("/items", {"items": [{"item_id": item, "price": "cheap"}]},
                               422, "validation_error", None, None),  # the domain's schema types its columns
        "age not an integer": ("/users", {"users": [{"user_id": user, "age": "old"}]},
                               422, "validation_error", None, None),
        "column the schema lacks": ("/items", {"items": [{"item_id": item, "colour": "red"}]},
                                    422, "validation_error", None, None),  # and its columns
        "event field the API lacks": ("/events", {"events": [event(user, item, colour="red")]},
                                      422, "validation_error", None, None),
        "event id twice": ("/events", {"events": [event(user, item, event_id="twice"),
                                                  event(user, live.item(1), event_id="twice")]},
                           422, "invalid_records", 1, "event_id"),
        "no records": ("/events", {"events": []}, 422, "validation_error", None, None),
        "1001 records": ("/events", {"events": many}, 422, "validation_error", None, None),
        "body over 1 MiB": ("/items", {"items": huge}, 413, "body_too_large", None, None),
        "one bad record among good ones": ("/events", {"events": good[:3] + [event(user, item, ts="never")] + good[3:]},
                                           422, "invalid_records", 3, "ts"),
        "one unknown item among good ones": ("/events", {"events": good[:4] + [event(user, "nope")] + good[4:]},
                                             422, "invalid_records", 4, "item_id"),
    }


HTTP_CASES = ["unknown event type", "bad timestamp", "unknown item", "value not a number", "object as a value",
              "price not a number", "age not an integer", "column the schema lacks", "event field the API lacks",
              "event id twice", "no records", "1001 records", "body over 1 MiB", "one bad record among good ones",
              "one unknown item among good ones"]


@pytest.mark.parametrize("case", HTTP_CASES)
def test_api_refuses_a_bad_batch_and_stores_nothing(live: Live, case: str) -> None:
    path, body, status, code, record, field = _http_cases(live)[case]
    before = everything(live.writer.store)
    answer = live.post(path, body)
    assert answer.status_code == status, answer.text
    refusal = answer.json()
    assert refusal["code"] == code and refusal["request_id"]
    if code == "invalid_records":
        assert (refusal["record"], refusal["field"]) == (record, field), refusal
        assert f"POST /{DOMAIN}{path}" in refusal["detail"]
    assert_same_contents(before, everything(live.writer.store))


def test_the_validation_error_names_the_record_and_field(live: Live) -> None:
    answer = live.post("/events", {"events": [event(live.users[0], live.item(0)),
                                              event(live.users[0], live.item(0), value="abc")]})
    assert answer.status_code == 422
    assert {tuple(problem["loc"][:4]) for problem in answer.json()["detail"]} == {("body", "events", 1, "value")}


# -- who may write (and read) --------------------------------------------------------------
def test_auth_matrix(live: Live) -> None:
    body = {"events": [event(live.users[3], live.item(3), event_id="auth-1")]}
    _, other_domain = live.keys.create("video")
    revoked_info, revoked = live.keys.create(DOMAIN, name="to revoke")
    before = everything(live.writer.store)

    missing = live.post("/events", body, headers={})
    assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    for path in ("/items", "/users"):
        assert live.post(path, {path[1:]: [{"item_id" if path == "/items" else "user_id": "x"}]},
                         headers={}).status_code == 401
    for secret in ("rk_ecommerce_not-a-key", other_domain):
        refused = live.post("/events", body, headers={"Authorization": f"Bearer {secret}"})
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert live.post("/events", body, headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    assert_same_contents(before, everything(live.writer.store))

    with_revoked = {"Authorization": f"Bearer {revoked}"}
    assert live.post("/events", body, headers=with_revoked).status_code == 200
    live.keys.revoke(revoked_info.key_id)  # while serving: no restart
    refused = live.post("/events", {"events": [event(live.users[3], live.item(4))]}, headers=with_revoked)
    assert refused.status_code == 403 and "revoked" in refused.json()["detail"]
    assert live.post("/events", body).status_code == 200  # the good key (a duplicate now)
    assert events_of(live.writer.store, live.users[3]).height - before["events"].filter(
        pl.col("user_id") == live.users[3]).height == 1


def test_reads_need_a_key_when_configured(live: Live) -> None:
    request = {"user_id": live.users[4], "k": 3}
    assert live.client.post("/recommend", json=request).status_code == 200
    live.service.configure({**live.config, "require_key_for_reads": True})
    try:
        refused = live.client.post("/recommend", json=request)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        wrong = live.client.post("/recommend", json=request, headers={"Authorization": "Bearer rk_x"})
        assert wrong.status_code == 403
        assert live.client.get(f"/similar/{live.item(0)}").status_code == 401
        assert live.client.post("/recommend", json=request, headers=live.headers).status_code == 200
        assert live.client.get(f"/similar/{live.item(0)}", headers=live.headers).status_code == 200
        assert live.client.get("/health").status_code == 200  # health stays open for the load balancer
    finally:
        live.service.configure(live.config)
    assert live.client.post("/recommend", json=request).status_code == 200


# -- retries and group commits -------------------------------------------------------------
def test_a_retried_batch_is_stored_once(live: Live) -> None:
    user = live.users[5]
    body = {"events": [event(user, live.item(n), event_id=f"retry-{n}") for n in range(3)]}
    first = live.post("/events", body)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 3 and first.json()["duplicates"] == 0
    stored = everything(live.writer.store)
    again = live.post("/events", body).json()
    assert (again["seq"], again["accepted"], again["duplicates"]) == (first.json()["seq"], 0, 3)
    assert_same_contents(stored, everything(live.writer.store))
    ids = live.writer.store.sql("SELECT event_id, seq FROM live_event_ids WHERE event_id LIKE 'retry-%'")
    assert sorted(ids["event_id"]) == ["retry-0", "retry-1", "retry-2"]
    assert set(ids["seq"]) == {first.json()["seq"]}

    body["events"].append(event(user, live.item(3), event_id="retry-3"))  # a retry with one more event
    partial = live.post("/events", body).json()
    assert (partial["accepted"], partial["duplicates"]) == (1, 3) and partial["seq"] > first.json()["seq"]
    assert events_of(live.writer.store, user).height == stored["events"].filter(
        pl.col("user_id") == user).height + 1


def _group(live: Live, name: str, size: int = 3) -> LiveBatch:
    """A batch of ``size`` events of its own user ``name`` (so it can be counted)."""
    return LiveBatch("events", [event(name, live.item(n), event_id=f"{name}-{n}") for n in range(size)])


_blockers = itertools.count()


@contextmanager
def store_busy(live: Live) -> Iterator[None]:
    """Hold the store, so that the batches submitted in the block queue up into one group
    commit: the writer has taken a first batch alone and waits for the store with it."""
    writer = live.writer
    with writer.store.transaction():
        blocker = writer.submit(_group(live, f"blocker-{next(_blockers)}", 1))
        while writer.pending():
            time.sleep(0.001)
        yield
    assert isinstance(blocker.result(timeout=60), LiveAck)


def test_one_bad_batch_in_a_group_commit_fails_alone(live: Live) -> None:
    writer = live.writer
    batches = [_group(live, f"group-{n}") for n in range(24)]
    bad = 11
    batches[bad] = LiveBatch("events", [event("group-11", live.item(0)), event("group-11", "no-such-item")])
    order: list[int] = []  # the order the writer queued them in
    futures: dict[int, Future[LiveAck | Exception]] = {}
    queued = threading.Lock()

    def submit(n: int) -> None:
        with queued:
            futures[n] = writer.submit(batches[n])
            order.append(n)

    with store_busy(live):
        seq, groups = writer.live_state().seq + 1, writer.groups + 1  # after the batch the writer holds
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(submit, range(len(batches))))
    answers = {n: future.result(timeout=60) for n, future in futures.items()}

    assert writer.groups == groups + 1  # one group commit took them all
    refused = answers[bad]
    assert isinstance(refused, IngestError) and (refused.row, refused.column) == (1, "item_id")
    acks = [answers[n] for n in order if n != bad]
    assert all(isinstance(ack, LiveAck) and ack.accepted == 3 for ack in acks)
    seqs = [ack.seq for ack in acks if isinstance(ack, LiveAck)]
    assert seqs == list(range(seq + 1, seq + len(batches)))  # unique, increasing in queue order, no gap
    counts = writer.store.sql("SELECT user_id, count(*) AS n FROM events WHERE user_id LIKE 'group-%' GROUP BY 1")
    assert dict(counts.iter_rows()) == {f"group-{n}": 3 for n in range(len(batches)) if n != bad}
    logged = writer.store.sql("SELECT seq, records FROM live_log WHERE seq > ? ORDER BY seq", [seq])
    assert logged["seq"].to_list() == seqs and set(logged["records"]) == {3}


def test_a_retry_queued_in_the_same_group_is_a_duplicate(live: Live) -> None:
    writer = live.writer
    original, retry, other = _group(live, "twin"), _group(live, "twin"), _group(live, "twin-neighbour")
    with store_busy(live):  # all three queue into one group
        futures = [writer.submit(batch) for batch in (original, retry, other)]
    first, second, third = (future.result(timeout=60) for future in futures)
    assert isinstance(first, LiveAck) and isinstance(second, LiveAck) and isinstance(third, LiveAck), (first, second)
    assert (second.seq, second.accepted, second.duplicates) == (first.seq, 0, 3)
    assert events_of(writer.store, "twin").height == 3 and events_of(writer.store, "twin-neighbour").height == 3


def test_batches_of_one_group_commit_in_one_transaction(live: Live) -> None:
    """``append_live`` with many batches: each its own sequence number, the bad one refused."""
    writer = live.writer
    batches = [_group(live, f"direct-{n}", 2) for n in range(5)]
    batches[2] = LiveBatch("events", [event("direct-2", live.item(0), ts="not a time")])
    seq = writer.live_state().seq
    answers = writer.store.append_live(batches)  # what the writer's commit thread does with a group
    assert isinstance(answers[2], IngestError) and answers[2].column == "ts"
    assert [a.seq for a in answers if isinstance(a, LiveAck)] == [seq + 1, seq + 2, seq + 3, seq + 4]
    writer.append(_group(live, "direct-after", 1), timeout=30)  # the writer refreshes its state
    assert writer.live_state().seq == seq + 5


# -- what posted records change in the next answer ------------------------------------------
def test_three_views_change_the_next_recommendation(live: Live) -> None:
    user = live.users[6]
    before = live.recommend(user_id=user, k=10)
    category = live.items.filter(~pl.col("item_id").is_in(before))["category"][0]
    viewed = live.items.filter(pl.col("category") == category)["item_id"].to_list()[:3]
    answer = live.post("/events", {"events": [event(user, item, event_type="view") for item in viewed]})
    assert answer.status_code == 200 and answer.json()["visible"] and answer.json()["accepted"] == 3
    assert live.recommend(user_id=user, k=10) != before
    assert events_of(live.writer.store, user)["item_id"].to_list()[-3:] == viewed


def test_a_purchased_product_is_not_shown_again(live: Live) -> None:
    user = live.users[7]
    shown = live.recommend(user_id=user, k=10)
    answer = live.post("/events", {"events": [event(user, shown[0], event_type="purchase", event_id="buy-1")]})
    assert answer.status_code == 200 and answer.json()["visible"]
    assert shown[0] not in live.recommend(user_id=user, k=10)


def test_history_in_the_request_answers_an_anonymous_visitor(live: Live) -> None:
    history = [live.item(10), {"item_id": live.item(11), "event_type": "cart"}, "no-such-item"]
    answer = live.client.post("/recommend", json={"history": history, "k": 5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user_id"] is None and not body["fallback"] and len(body["items"]) == 5
    assert any("'no-such-item'" in note for note in body["notes"])
    popular = live.client.post("/recommend", json={"user_id": "nobody-at-all", "k": 5}).json()
    assert popular["fallback"] and [i["item_id"] for i in popular["items"]] != [i["item_id"] for i in body["items"]]
    user = live.users[8]  # a known user's request history replaces the stored one (users are encoded from it)
    assert live.recommend(user_id=user, history=[live.item(10), live.item(11)], k=5) == \
        live.recommend(history=[live.item(10), live.item(11)], k=5)


def _posted_copy(live: Live) -> tuple[str, str, str]:
    """Post a product with the attributes of a stored one; returns (original, copy, category)."""
    original = live.items.row(5, named=True)
    copy = {k: v for k, v in original.items() if k not in ("item_id", "valid_from", "created_at")}
    copy["item_id"] = f"posted-{original['item_id']}"
    if live.service.recommender.item_index.get(copy["item_id"]) is None:
        answer = live.post("/items", {"items": [copy]})
        assert answer.status_code == 200 and answer.json()["accepted"] == 1 and answer.json()["visible"]
    return original["item_id"], copy["item_id"], original["category"]


def test_a_posted_item_is_similar_and_recommended(live: Live) -> None:
    original, copy, category = _posted_copy(live)
    assert copy in [i["item_id"] for i in live.client.get(f"/similar/{original}?k=10").json()]
    similar = live.client.get(f"/similar/{copy}?k=5")
    assert similar.status_code == 200 and original in [i["item_id"] for i in similar.json()]
    assert copy in live.recommend(history=[original], k=10, context={"filters": {"category": [category]}})
    ack = live.post("/events", {"events": [event(live.users[9], copy, event_type="cart")]})
    assert ack.status_code == 200  # events may name the posted item now


def test_a_history_of_only_posted_items_is_answered_by_content(live: Live) -> None:
    """A session visitor who has seen only an item posted after training (no learned embedding)
    gets what is like it, with that reason, not popularity nor scores of 0 in arbitrary order."""
    original, copy, category = _posted_copy(live)
    answer = live.client.post("/recommend", json={"history": [copy], "k": 5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    shown = [item["item_id"] for item in body["items"]]
    assert not body["fallback"] and len(shown) == 5 and copy not in shown
    similar = [i["item_id"] for i in live.client.get(f"/similar/{copy}?k=5").json()]
    assert len(set(shown) & set(similar)) >= 3, (shown, similar)  # what /similar finds for it
    assert all(item["reasons"][0].startswith("similar to ") for item in body["items"])
    scores = [item["score"] for item in body["items"]]
    assert max(scores) > 0.5 and len(set(scores)) > 1
    filtered = live.recommend(history=[copy], k=3, context={"filters": {"category": [category]}})
    assert filtered and all(live.service.recommender.catalog.columns["category"][
        live.service.recommender.item_index[i]] == category for i in filtered)


# -- publish folds the live log -------------------------------------------------------------
def test_publish_folds_the_live_records(live: Live) -> None:
    user = live.users[10]
    bought = live.recommend(user_id=user, k=10)[0]
    assert live.post("/events", {"events": [event(user, bought, event_type="purchase")]}).status_code == 200
    _, copy, _ = _posted_copy(live)
    last = live.writer.live_state().seq
    assert live.writer.live_state().batches_since_publish > 0

    info = live.writer.publish(str(live.snapshots))
    state = live.writer.live_state()
    assert (state.seq, state.published_seq, state.batches_since_publish, state.records_since_publish) == \
        (last, last, 0, 0)
    assert read_manifest(Path(info["path"])).live_seq == last

    live.service.configure(live.config, force=True)
    health = live.client.get("/health").json()
    assert (health["snapshot_version"], health["live_seq"], health["live_batches"]) == (info["version"], last, 0)
    recommender = live.service.recommender
    assert recommender.online is not None
    features = recommender.online.user(user)
    assert (bought, "purchase") in zip(features.history, features.history_event_types)
    assert bought not in live.recommend(user_id=user, k=10)  # hidden by the snapshot's history now
    assert live.client.get(f"/similar/{copy}?k=3").status_code == 200  # the snapshot's catalogue has it


# -- the CLI shows the live log --------------------------------------------------------------
def test_store_stats_shows_live_counts(tmp_path: Path, small_frames: dict[str, pl.DataFrame]) -> None:
    path = tmp_path / "s.duckdb"
    with FeatureStore(path) as store:
        for kind in ("users", "items", "events"):
            store.ingest(small_frames[kind], kind)
        store.append_live([LiveBatch("events", [event("u1", "i4"), event("u9", "i2")]),
                           LiveBatch("items", [{"item_id": "i5", "title": "New hat"}])])
    result = CliRunner().invoke(cli, ["store", "stats", "--json", "--store", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["live"] == {"seq": 2, "published_seq": 0, "batches_since_publish": 2, "records_since_publish": 3}
    assert (stats["users"], stats["items"], stats["events"]) == (4, 5, 8)
