"""The HTTP API of each domain, tested on the FastAPI app directly (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recengine.components import Candidates, RankContext, Ranker
from recengine.errors import RequestError
from recengine.project import domain_paths, resolve_targets
from recengine.recommender import TIME_NOT_USED
from recengine.serve.api import build_api
from recengine.serve.schemas import RecommendRequest
from recengine.serve.service import NotReady, RecommendService


def _client(project: Path, domain: str) -> tuple[TestClient, RecommendService]:
    target = resolve_targets(project, [domain])[0]
    service = RecommendService(domain, {"bundle": str(target.bundle), "snapshot": str(target.snapshot)})
    return TestClient(build_api(domain, lambda: service)), service


@pytest.fixture(scope="module")
def shop(project: Path) -> tuple[TestClient, RecommendService]:
    return _client(project, "ecommerce")


def test_recommend_known_user(shop) -> None:  # type: ignore[no-untyped-def]
    client, service = shop
    user = service.recommender.bundle.users.ids[0]
    response = client.post("/recommend", json={"user_id": user, "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert len(body["items"]) == 5 and body["fallback"] is False
    assert all(item["reasons"] for item in body["items"])
    bundle = service.recommender.bundle
    assert body["model"] == f"ecommerce/{bundle.version}"
    assert body["snapshot_version"] == service.recommender.online.version


def test_unknown_user_gets_fallback(shop) -> None:  # type: ignore[no-untyped-def]
    body = shop[0].post("/recommend", json={"user_id": "never-seen", "k": 3}).json()
    assert body["fallback"] is True and [i["reasons"] for i in body["items"]] == [["popular"]] * 3
    quiet = shop[0].post("/recommend", json={"user_id": "never-seen", "k": 3, "explain": False}).json()
    assert quiet["fallback"] is True and [i["reasons"] for i in quiet["items"]] == [[]] * 3


@pytest.mark.parametrize("payload, fragment", [
    ({"user_id": "u1", "k": 0}, "greater than or equal to 1"),
    ({"user_id": "u1", "k": 1000}, "less than or equal to 100"),
    ({"k": 5}, "user_id"),
    ({"user_id": "", "k": 5}, "at least 1 character"),
    ({"user_id": "u1", "colour": "red"}, "Extra inputs"),
    ({"user_id": "u1", "context": {"time": "not a time"}}, "datetime"),
])
def test_bad_requests_are_422_with_reason(shop, payload, fragment) -> None:  # type: ignore[no-untyped-def]
    response = shop[0].post("/recommend", json=payload)
    assert response.status_code == 422 and fragment in response.text


def test_filter_on_unknown_column_is_422(shop) -> None:  # type: ignore[no-untyped-def]
    client, service = shop
    user = service.recommender.bundle.users.ids[0]
    response = client.post("/recommend", json={"user_id": user, "context": {"filters": {"colour": ["red"]}}})
    assert response.status_code == 422 and "colour" in response.json()["detail"]


def test_filters_and_exclude(shop) -> None:  # type: ignore[no-untyped-def]
    client, service = shop
    user = service.recommender.bundle.users.ids[1]
    first = client.post("/recommend", json={"user_id": user, "k": 5}).json()["items"]
    category = service.recommender.catalog.columns["category"][service.recommender.item_index[first[0]["item_id"]]]
    body = client.post("/recommend", json={"user_id": user, "k": 5, "context": {
        "filters": {"category": [category]}, "exclude": [first[0]["item_id"]]}}).json()
    ids = [i["item_id"] for i in body["items"]]
    assert first[0]["item_id"] not in ids
    categories = service.recommender.catalog.columns["category"]
    assert all(categories[service.recommender.item_index[i]] == category for i in ids)


def test_excluding_many_items_still_fills_the_list(shop) -> None:  # type: ignore[no-untyped-def]
    """An unfiltered request is retrieved over-fetched by its exclude count: excluding the user's
    whole top 100 still leaves a full list of other items."""
    client, service = shop
    user = service.recommender.bundle.users.ids[2]
    top = [i["item_id"] for i in client.post("/recommend", json={"user_id": user, "k": 100}).json()["items"]]
    body = client.post("/recommend", json={"user_id": user, "k": 10, "context": {"exclude": top}}).json()
    ids = [item["item_id"] for item in body["items"]]
    assert len(top) == 100 and len(ids) == 10 and not set(ids) & set(top)
    assert body["fallback"] is False


def test_retrieval_with_exclusions_is_the_exact_top_n_of_what_is_left(shop) -> None:  # type: ignore[no-untyped-def]
    recommender = shop[1].recommender
    n = recommender.num_candidates
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((2, recommender.item_matrix.shape[1])).astype(np.float32)
    scores = queries @ recommender.item_matrix.T
    scores[:, 0] = -np.inf
    assert recommender.catalog.size >= n + 50  # enough items for n to remain after the exclusions
    excluded = [np.argsort(-scores[0])[:50].astype(np.int64), np.zeros(0, dtype=np.int64)]
    top = recommender._retrieve(queries, [None, None], excluded, n)
    for row in range(2):
        left = scores[row].copy()
        left[excluded[row]] = -np.inf
        assert 0 not in top[row] and set(top[row].tolist()) == set(np.argsort(-left, kind="stable")[:n].tolist())


def test_similar_health_model_and_docs(shop) -> None:  # type: ignore[no-untyped-def]
    client, service = shop
    item = service.recommender.item_ids[0]
    assert len(client.get(f"/similar/{item}?k=4").json()) == 4
    missing = client.get("/similar/no-such-item")
    assert missing.status_code == 404 and "unknown item" in missing.json()["detail"]
    assert client.get(f"/similar/{item}?k=0").status_code == 422
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/model").json()
    assert info["bundle"] == "ecommerce" and info["version"] == service.recommender.bundle.version
    assert info["snapshot_version"] == service.recommender.online.version
    # serving encodes every user once per snapshot; a small catalogue is scanned exactly
    assert info["retrieval"]["kind"] == "exact" and info["retrieval"]["cached_users"] >= info["users"] > 0
    assert client.get("/docs").status_code == 200 and "/recommend" in client.get("/openapi.json").text


def test_service_without_model_is_503_not_500() -> None:
    service = RecommendService("news")
    client = TestClient(build_api("news", lambda: service))
    assert client.get("/health").status_code == 503
    response = client.post("/recommend", json={"user_id": "u1"})
    assert response.status_code == 503 and "no model loaded" in response.json()["detail"]
    with pytest.raises(NotReady):
        service.check_health()


def test_bad_reconfigure_keeps_serving(shop) -> None:  # type: ignore[no-untyped-def]
    client, service = shop
    with pytest.raises(LookupError):
        service.configure({"bundle": "/no/such/bundle"})
    assert client.get("/health").json()["status"] == "ok"


def test_project_errors_name_the_fix(project: Path, tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="recengine quickstart --domains"):
        resolve_targets(tmp_path, None)
    with pytest.raises(LookupError, match="has no trained bundle.*recengine quickstart --domains music"):
        domain_paths(tmp_path, "music")["base"].mkdir(parents=True)
        resolve_targets(tmp_path, ["music"])


class _FailsFor(Ranker):
    """A ranker with a bug that only one user's requests hit."""

    def __init__(self, user_id: str) -> None:
        super().__init__()
        self.user_id = user_id

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:
        if context.user_id == self.user_id:
            raise KeyError("a bug for one user")
        return candidates


def test_a_bad_request_in_a_batch_fails_alone(shop) -> None:  # type: ignore[no-untyped-def]
    client, service = shop
    users = list(service.recommender.bundle.users.ids[:6])
    category = str(service.recommender.catalog.columns["category"][1])
    good = [RecommendRequest.model_validate(r) for r in (
        *({"user_id": u, "k": 5} for u in users),
        {"user_id": "never-seen", "k": 3},
        {"user_id": users[0], "k": 4, "context": {"filters": {"category": [category]}, "exclude": ["nope"]}},
    )]
    bad = [RecommendRequest.model_validate(r) for r in (
        {"user_id": users[1], "context": {"filters": {"colour": ["red"]}}},  # unknown column
        {"user_id": users[2], "context": {"filters": {"price": ["cheap"]}}},  # a string for a number
        {"user_id": "the-buggy-one"},  # a ranker fails on this request only
    )]
    clean = service.recommend_many(good)  # the good requests without their bad neighbours
    alone = [service.recommend_many([request])[0] for request in good]
    batch = [*good[:2], bad[0], *good[2:5], bad[1], *good[5:], bad[2]]
    service.recommender.rankers.append(_FailsFor("the-buggy-one"))
    try:
        answers = service.recommend_many(batch)
    finally:
        service.recommender.rankers.pop()
    errors = [answers[2], answers[6], answers[-1]]
    assert isinstance(errors[0], RequestError) and "colour" in str(errors[0])
    assert isinstance(errors[1], RequestError) and "price" in str(errors[1])
    assert isinstance(errors[2], KeyError)
    answered = [a.model_dump(exclude={"request_id"}) for a in answers if not isinstance(a, Exception)]
    assert answered == [a.model_dump(exclude={"request_id"}) for a in clean]  # type: ignore[union-attr]
    for mixed, single in zip(answered, alone):  # alone: the same, up to float32 rounding of batched scores
        assert [(i["item_id"], i["reasons"]) for i in mixed["items"]] == [
            (i.item_id, i.reasons) for i in single.items]  # type: ignore[union-attr]
        assert [i["score"] for i in mixed["items"]] == pytest.approx([i.score for i in single.items], rel=1e-5)  # type: ignore[union-attr]
    with pytest.raises(RequestError, match="colour"):
        service.validate(bad[0])  # what the deployment checks before a request joins a batch


def test_filters_the_catalogue_cannot_apply_are_422(shop) -> None:  # type: ignore[no-untyped-def]
    client, service = shop
    user = service.recommender.bundle.users.ids[0]
    for filters, fragment in (({"price": ["cheap"]}, "price"), ({"category": [3]}, "category")):
        response = client.post("/recommend", json={"user_id": user, "context": {"filters": filters}})
        assert response.status_code == 422 and response.json()["code"] == "invalid_request"
        assert fragment in response.json()["detail"]


def test_time_no_ranker_reads_is_noted_and_paths_stay_private(shop) -> None:  # type: ignore[no-untyped-def]
    client, service = shop
    user = service.recommender.bundle.users.ids[0]
    timed = client.post("/recommend", json={"user_id": user, "context": {"time": "2024-05-01T12:00:00Z"}}).json()
    assert timed["notes"] == [TIME_NOT_USED]  # the ecommerce chain has no freshness ranker
    assert client.post("/recommend", json={"user_id": user}).json()["notes"] == []
    assert client.get("/model").json()["path"] is None


def test_the_deployment_checks_a_request_before_it_joins_a_batch(shop) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    from types import SimpleNamespace

    from recengine.serve.deployment import DomainRecommender

    batched: list[RecommendRequest] = []

    async def batch(request: RecommendRequest) -> str:
        batched.append(request)
        return "answered in a batch"

    replica = SimpleNamespace(service=shop[1], recommend_batch=batch)  # the replica's state, without Ray
    recommend = DomainRecommender.func_or_class.recommend  # type: ignore[attr-defined]
    good = RecommendRequest.model_validate({"user_id": "u1"})
    bad = RecommendRequest.model_validate({"user_id": "u1", "context": {"filters": {"colour": ["red"]}}})
    assert asyncio.run(recommend(replica, good)) == "answered in a batch"
    with pytest.raises(RequestError, match="colour"):
        asyncio.run(recommend(replica, bad))
    assert batched == [good]
