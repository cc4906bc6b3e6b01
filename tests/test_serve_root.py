"""The application at ``/``: a path no domain serves is a JSON 404, never Ray's plain text."""

from __future__ import annotations

from fastapi.testclient import TestClient

from recengine.serve.root import build_root_api


def test_unknown_paths_get_the_json_404_naming_the_domains() -> None:
    client = TestClient(build_root_api(["ecommerce", "news"]))
    paths = (("GET", "/nope"), ("POST", "/shop/recommend"), ("DELETE", "/x/y/z"), ("GET", "/" + "a" * 5000))
    for method, path in paths:
        answer = client.request(method, path, headers={"X-Request-ID": "probe-1"})
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert body["code"] == "not_found" and body["request_id"] == "probe-1"
        assert "/ecommerce, /news" in body["detail"] and len(body["detail"]) < 500  # a long path is cut
    index = client.get("/").json()
    assert index == {"domains": ["/ecommerce", "/news"], "docs": ["/ecommerce/docs", "/news/docs"]}
