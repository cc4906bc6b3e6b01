"""The HTTP API of each domain, tested on the FastAPI app directly (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recengine.project import domain_paths, resolve_targets
from recengine.serve.api import build_api
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
