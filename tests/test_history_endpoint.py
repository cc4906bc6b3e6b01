"""``GET /<domain>/users/{user_id}/history`` and ``GET /<domain>/model``'s offline metrics: the
reads the dashboard shows beside a user's recommendations, on a served domain in this process
(its writer, a replica following it; no Ray).

A user's history is the store's events, newest first (the published snapshot, then what was
posted since); a user the model does not know is a 404; a bad ``limit`` is a 422; an event
posted live is the first one listed on the next read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recengine.live_writer import StoreWriter
from recengine.serve.service import RecommendService, offline_metrics
from tests.conftest import domain_in_process

DOMAIN = "ecommerce"


@dataclass
class Domain:
    writer: StoreWriter
    service: RecommendService
    client: TestClient
    headers: dict[str, str]
    config: dict[str, Any]
    bundle: Path
    users: list[str]  # users the model trained on, with more than 20 stored events
    titles: dict[str, str]  # item id → title, as stored

    def history(self, user: str, **params: Any) -> Any:
        return self.client.get(f"/users/{user}/history", params=params)

    def stored(self, user: str, limit: int) -> list[tuple[str, str, datetime]]:
        """The user's latest events as the store holds them (the snapshot's order: ts, then seq)."""
        rows = self.writer.store.sql("SELECT item_id, event_type, ts FROM events WHERE user_id = ? "
                                     "ORDER BY ts DESC, seq DESC LIMIT ?", [user, limit])
        return [(i, t, ts.replace(tzinfo=UTC)) for i, t, ts in rows.iter_rows()]


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Domain]:
    with domain_in_process(tmp_path_factory.mktemp("history"), DOMAIN, users=200, items=150, events=4000) as served:
        writer, service = served.writer, served.service
        items = writer.store.latest("items")
        trained = set(service.recommender.bundle.users.ids)
        active = writer.store.sql("SELECT user_id FROM events GROUP BY user_id HAVING count(*) > 20 ORDER BY user_id")
        yield Domain(writer, service, served.client, served.auth, served.config, served.prepared.trained.bundle_path,
                     [u for u in active["user_id"].to_list() if u in trained],
                     dict(zip(items["item_id"].to_list(), items["title"].to_list())))


def listed(answer: Any) -> list[tuple[str, str, datetime]]:
    return listed_of(answer.json()["events"])


def listed_of(events: list[dict[str, Any]]) -> list[tuple[str, str, datetime]]:
    return [(e["item_id"], e["event_type"], datetime.fromisoformat(e["ts"])) for e in events]


def test_a_users_history_is_their_stored_events_newest_first(domain: Domain) -> None:
    user = domain.users[0]
    answer = domain.history(user)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user_id"] == user and len(body["events"]) == 20  # the default limit
    assert listed(answer) == domain.stored(user, 20)
    assert all(e["title"] == domain.titles[e["item_id"]] for e in body["events"])
    few = domain.history(user, limit=3)
    assert few.status_code == 200 and listed(few) == domain.stored(user, 3)


def test_the_limit_is_bounded(domain: Domain) -> None:
    user = domain.users[1]
    everything = domain.history(user, limit=200)
    assert everything.status_code == 200 and listed(everything) == domain.stored(user, 200)
    for bad in (0, 201, -1, "ten", 2.5):
        refused = domain.history(user, limit=bad)
        assert refused.status_code == 422, (bad, refused.text)
        body = refused.json()
        assert body["code"] == "validation_error" and body["detail"][0]["loc"] == ["query", "limit"]


def test_a_user_the_model_does_not_know_is_404(domain: Domain) -> None:
    answer = domain.history("nobody-ever")
    assert answer.status_code == 404
    body = answer.json()
    assert body["code"] == "not_found" and "nobody-ever" in body["detail"] and body["request_id"]
    too_long = domain.client.get(f"/users/{'u' * 300}/history")
    assert too_long.status_code == 422


def test_an_event_posted_live_is_listed_first(domain: Domain) -> None:
    user = domain.users[2]
    before = listed(domain.history(user, limit=5))
    item = next(i for i in domain.titles if i not in {e[0] for e in before})
    when = datetime.now(UTC).replace(microsecond=0)
    posted = domain.client.post("/events", headers=domain.headers, json={"events": [
        {"user_id": user, "item_id": item, "event_type": "purchase", "ts": when.isoformat()}]})
    assert posted.status_code == 200 and posted.json()["visible"], posted.text
    after = domain.history(user, limit=5).json()["events"]
    assert (after[0]["item_id"], after[0]["event_type"]) == (item, "purchase")
    assert datetime.fromisoformat(after[0]["ts"]) == when and after[0]["title"] == domain.titles[item]
    assert listed_of(after[1:]) == before[:4]  # the snapshot's events follow, unchanged

    newcomer = "first-visit-user"  # known from its first live event on
    assert domain.history(newcomer).status_code == 404
    posted = domain.client.post("/events", headers=domain.headers, json={"events": [
        {"user_id": newcomer, "item_id": item, "event_type": "view"}]})
    assert posted.status_code == 200 and posted.json()["visible"], posted.text
    events = domain.history(newcomer).json()["events"]
    assert [(e["item_id"], e["event_type"]) for e in events] == [(item, "view")] and events[0]["ts"]


def test_history_needs_a_read_key_when_reads_do(domain: Domain) -> None:
    user = domain.users[3]
    domain.service.configure({**domain.config, "require_key_for_reads": True})
    try:
        refused = domain.history(user)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        wrong = domain.client.get(f"/users/{user}/history", headers={"Authorization": "Bearer rk_nope"})
        assert wrong.status_code == 403
        answered = domain.client.get(f"/users/{user}/history", headers=domain.headers)
        assert answered.status_code == 200 and answered.json()["events"]
        assert domain.client.get("/model").json()["reads_need_key"] is True
    finally:
        domain.service.configure(domain.config)
    assert domain.client.get("/model").json()["reads_need_key"] is False


def test_without_a_snapshot_the_history_is_what_the_bundle_trained_on(domain: Domain) -> None:
    from recengine.bundle import load_bundle
    from recengine.recommender import Recommender

    recommender = Recommender(load_bundle(domain.bundle))  # no snapshot, no live overlay
    user = domain.users[4]
    events = recommender.recent_events(user, 200)
    assert events is not None and events
    trained = recommender.bundle.histories[recommender.bundle.users.index[user]]
    assert [e.item_id for e in events] == [recommender.catalog.item_ids[i] for i in trained[trained > 0][::-1]]
    assert all(e.event_type is None and e.ts is None for e in events)
    assert recommender.recent_events("nobody-ever", 5) is None


def test_model_info_carries_the_bundles_offline_metrics(domain: Domain) -> None:
    answer = domain.client.get("/model")
    assert answer.status_code == 200
    offline = answer.json()["offline"]
    saved = json.loads((domain.bundle / "metrics.json").read_text())
    assert offline["test"] == saved["test"] and offline["valid"] == saved["valid"]
    assert offline["baselines"] == {"popularity": saved["popularity"]}
    assert offline["protocol"] == saved["protocol"] and offline["test_users"] == saved["test_users"]
    assert "history" not in offline  # the per-epoch training log stays in the bundle
    assert offline_metrics({}) is None  # a bundle saved without test metrics shows none
    ratings = offline_metrics({"protocol": "rating", "test": {"rmse": 0.9, "mae": 0.7}, "test_rows": 50,
                               "mean_rating": {"rmse": 1.1, "mae": 0.9}, "history": [{"epoch": 1}]})
    assert ratings is not None and ratings.baselines == {"mean_rating": {"rmse": 1.1, "mae": 0.9}}
