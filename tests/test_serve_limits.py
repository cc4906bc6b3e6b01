"""The HTTP API under careless or hostile input: bounded bodies and fields, strict types, one
error shape with a request id everywhere, no server path for anonymous callers.

Most tests answer from a stand-in service (no model needed): what is tested is the app.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from recengine.errors import NotFoundError
from recengine.serve.api import ADMIN_KEY_ENV, build_api
from recengine.serve.guard import MAX_BODY_BYTES, MAX_JSON_DEPTH, json_depth, sane_request_id
from recengine.serve.http_errors import MAX_ECHO_CHARS
from recengine.serve.schemas import MAX_EXCLUDE, MAX_FILTER_VALUES, ModelInfo, RecommendRequest, RecommendResponse
from recengine.serve.service import NotReady

SERVER_PATH = "/srv/models/shop/3"


class _Service:
    """Answers every request with an empty list, or raises ``error``."""

    config = None  # served without key checks on reads

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.seen: list[RecommendRequest] = []

    def recommend_many(self, requests: list[RecommendRequest]) -> list[Any]:
        if self.error is not None:
            raise self.error
        self.seen.extend(requests)
        return [RecommendResponse(user_id=r.user_id, items=[], fallback=True, model="shop/3") for r in requests]

    def similar(self, item_id: str, k: int) -> list[Any]:
        raise NotFoundError(f"unknown item {item_id!r}")

    def model_info(self, show_path: bool = False) -> ModelInfo:
        return ModelInfo(domain="shop", bundle="shop", version=3, path=SERVER_PATH if show_path else None,
                         items=10, cold_items=0, users=5)


def _client(error: BaseException | None = None) -> tuple[TestClient, _Service]:
    service = _Service(error)
    return TestClient(build_api("shop", lambda: service), raise_server_exceptions=False), service  # type: ignore[arg-type, return-value]


def _assert_error_shape(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail", "code", "request_id"} and body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    return body


# -- sizes -------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_413_without_echo() -> None:
    client, service = _client()
    huge = b'{"user_id": "u1", "pad": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    declared = client.post("/recommend", content=huge, headers={"content-type": "application/json"})
    body = _assert_error_shape(declared, 413, "body_too_large")
    assert str(MAX_BODY_BYTES) in body["detail"] and len(declared.content) < 500
    chunks = iter([huge[i:i + 8192] for i in range(0, len(huge), 8192)])  # streamed, no Content-Length
    streamed = client.post("/recommend", content=chunks, headers={"content-type": "application/json"})
    _assert_error_shape(streamed, 413, "body_too_large")
    assert not service.seen  # the app never saw either
    assert client.post("/recommend", json={"user_id": "u1", "pad": "x" * 100}).status_code == 422  # under: parsed


@pytest.mark.parametrize("payload, where", [
    ({"user_id": "u" * 10_000}, "user_id"),
    ({"user_id": "u1", "context": {"exclude": ["i" * 10_000]}}, "exclude"),
    ({"user_id": "u1", "context": {"exclude": [f"i{i}" for i in range(MAX_EXCLUDE + 1)]}}, "exclude"),
    ({"user_id": "u1", "context": {"filters": {"category": [f"c{i}" for i in range(MAX_FILTER_VALUES + 1)]}}},
     "category"),
    ({"user_id": "u1", "context": {"filters": {"c" * 5_000: ["books"]}}}, "filters"),
])
def test_long_fields_are_422_and_errors_echo_only_an_excerpt(payload: dict[str, Any], where: str) -> None:
    response = _client()[0].post("/recommend", json=payload)
    body = _assert_error_shape(response, 422, "validation_error")
    assert any(where in str(error["loc"]) for error in body["detail"])
    assert len(response.content) < 20 * MAX_ECHO_CHARS  # never the input itself back


def test_filter_values_must_be_scalars() -> None:
    client = _client()[0]
    for values in ([{"in": "books"}], [["books"]]):
        response = client.post("/recommend", json={"user_id": "u1", "context": {"filters": {"category": values}}})
        body = _assert_error_shape(response, 422, "validation_error")
        assert all(error["loc"][:4] == ["body", "context", "filters", "category"] for error in body["detail"])


# -- strict types ------------------------------------------------------------------------
@pytest.mark.parametrize("payload", [
    {"user_id": "u1", "k": "5"},
    {"user_id": "u1", "k": True},
    {"user_id": "u1", "k": 5.0},
    {"user_id": 7},
    {"user_id": "u1", "explain": 0},
    {"user_id": "u1", "context": {"time": 0}},
    {"user_id": "u1", "context": {"exclude": [5]}},
])
def test_types_are_strict(payload: dict[str, Any]) -> None:
    _assert_error_shape(_client()[0].post("/recommend", json=payload), 422, "validation_error")


def test_valid_requests_still_parse() -> None:
    client, service = _client()
    response = client.post("/recommend", json={"user_id": "u1", "k": 5, "explain": False, "context": {
        "time": "2024-05-01T12:00:00Z", "exclude": ["i1"], "filters": {"category": ["books"], "price": [9.5, 10],
                                                                      "in_stock": [True]}}})
    assert response.status_code == 200, response.text
    request = service.seen[-1]
    assert request.k == 5 and request.context.time is not None and request.context.time.year == 2024
    assert request.context.filters == {"category": ["books"], "price": [9.5, 10], "in_stock": [True]}
    assert response.json()["notes"] == []


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+00:02", "9999-12-31T23:59:59-01:00"])
def test_a_time_with_no_utc_equivalent_is_422_not_500(time: str) -> None:
    # found by Schemathesis (tests/test_schemathesis.py): the freshness ranker converts
    # context.time to UTC, which overflowed out of years 1-9999 into a 500
    client, service = _client()
    response = client.post("/recommend", json={"user_id": "u1", "context": {"time": time}})
    body = _assert_error_shape(response, 422, "validation_error")
    assert body["detail"][0]["loc"] == ["body", "context", "time"] and "UTC" in body["detail"][0]["msg"]
    assert not service.seen
    edge = client.post("/recommend", json={"user_id": "u1", "context": {"time": "0001-01-01T00:00:00Z"}})
    assert edge.status_code == 200, edge.text


# -- malformed bodies --------------------------------------------------------------------
@pytest.mark.parametrize("content, code", [
    (b'{"user_id": "u1",', "malformed_json"),
    (b'{"user_id": "\xff\xfe"}', "invalid_encoding"),
    (b'{"user_id": "u1", "k": ' + b"[" * 50 + b"]" * 50 + b"}", "too_deep"),
    (b"[" * 30_000 + b"]" * 30_000, "too_deep"),
])
def test_malformed_bodies_are_400(content: bytes, code: str) -> None:
    response = _client()[0].post("/recommend", content=content, headers={"content-type": "application/json"})
    _assert_error_shape(response, 400, code)


def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[", "b": [1, {"c": "\\"]]]]]]]]]]]]"}]}', MAX_JSON_DEPTH) == 3
    assert json_depth(b"[" * 100, MAX_JSON_DEPTH) > MAX_JSON_DEPTH


# -- one error shape, with the request id -----------------------------------------------
def test_every_error_has_the_one_shape() -> None:
    client = _client()[0]
    _assert_error_shape(client.get("/no/such/route"), 404, "not_found")
    _assert_error_shape(client.get("/recommend"), 405, "method_not_allowed")
    body = _assert_error_shape(client.get("/similar/i9"), 404, "not_found")
    assert body["detail"] == "unknown item 'i9'"
    _assert_error_shape(client.get(f"/similar/{'i' * 10_000}"), 422, "validation_error")
    _assert_error_shape(_client(NotReady("shop: no model loaded"))[0].post("/recommend", json={"user_id": "u1"}),
                        503, "not_ready")


def test_a_bug_is_a_json_500_whose_request_id_is_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    client = _client(KeyError("a bug"))[0]
    with caplog.at_level(logging.ERROR, logger="recengine.serve"):
        response = client.post("/recommend", json={"user_id": "u1"}, headers={"X-Request-ID": "req-42"})
    body = _assert_error_shape(response, 500, "internal_error")
    assert body["request_id"] == "req-42" and "a bug" not in body["detail"]  # no internals to the client
    logged = [r for r in caplog.records if "req-42" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback, findable by the id


def test_every_response_carries_a_request_id() -> None:
    client = _client()[0]
    ok = client.post("/recommend", json={"user_id": "u1"}, headers={"X-Request-ID": "abc.123"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "abc.123"
    generated = client.post("/recommend", json={"user_id": "u1"}, headers={"X-Request-ID": "x" * 65})
    assert len(generated.headers["x-request-id"]) == 32 and generated.headers["x-request-id"] != "x" * 65
    assert client.get("/model").headers["x-request-id"]
    assert sane_request_id("has space") != "has space" and sane_request_id(None) != sane_request_id(None)


def test_behind_ray_serves_proxy_the_app_reads_the_request_id_and_leaves_the_header_to_it() -> None:
    client = TestClient(build_api("shop", lambda: _Service(), proxied=True))  # type: ignore[arg-type, return-value]
    response = client.get("/similar/i9", headers={"X-Request-ID": "proxy-7"})  # the proxy always sets one
    assert response.json()["request_id"] == "proxy-7" and "x-request-id" not in response.headers


def test_openapi_documents_the_error_model() -> None:
    schema = _client()[0].get("/openapi.json").json()
    properties = schema["components"]["schemas"]["ErrorBody"]["properties"]
    assert set(properties) == {"detail", "code", "request_id", "record", "field"}  # the last two: refused writes
    assert set(schema["components"]["schemas"]["ErrorBody"]["required"]) == {"detail", "code", "request_id"}
    for path, method in (("/recommend", "post"), ("/similar/{item_id}", "get"), ("/model", "get"),
                         ("/events", "post"), ("/items", "post"), ("/users", "post")):
        responses = schema["paths"][path][method]["responses"]
        assert {"400", "404", "408", "413", "422", "500", "503"} <= set(responses), path
        assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


# -- the operator key ------------------------------------------------------------------
def test_model_shows_the_server_path_only_to_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client()[0]
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    assert client.get("/model").json()["path"] is None
    assert client.get("/model", headers={"X-Admin-Key": ""}).json()["path"] is None  # no key configured: never
    monkeypatch.setenv(ADMIN_KEY_ENV, "s3cret")
    assert client.get("/model").json()["path"] is None
    assert client.get("/model", headers={"X-Admin-Key": "guess"}).json()["path"] is None
    assert client.get("/model", headers={"X-Admin-Key": "s3cret"}).json()["path"] == SERVER_PATH


# -- access log ----------------------------------------------------------------------------
def test_access_log_is_off_unless_asked_for(project: Path, tmp_path: Path) -> None:
    from recengine.cli.serve_cmd import serve
    from recengine.serve.deployment import DomainRecommender

    assert DomainRecommender.logging_config["enable_access_log"] is False  # type: ignore[attr-defined]
    for flags, expected in (([], False), (["--access-log"], True)):
        out = tmp_path / f"serve{len(flags)}.yaml"
        result = CliRunner().invoke(serve, ["config", "--project", str(project), "--out", str(out), *flags])
        assert result.exit_code == 0, result.output
        config = yaml.safe_load(out.read_text())
        assert config["logging_config"]["enable_access_log"] is expected
        assert all(d["logging_config"]["enable_access_log"] is expected
                   for app in config["applications"] for d in app["deployments"])


# -- the proxy's own answers (recengine.serve.proxy_errors, in front of Ray's real pieces) ----
def _proxy(*outcomes: BaseException | Any | None, seen: list[dict[str, str]] | None = None) -> TestClient:
    """Ray's proxy stand-in wrapped as Ray wraps it (its RequestIdMiddleware inside ours), one
    of ``outcomes`` per request (the last one from then on): an exception is answered by Ray's
    own code, a Starlette response is the replica's, None is no answer at all (Ray's case for a
    replica that died)."""
    left = list(outcomes)
    from ray.serve._private.http_util import (
        _apply_middlewares,
        get_http_response_status,
        send_http_response_on_exception,
    )

    from recengine.serve.proxy_errors import proxy_middlewares

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if seen is not None:
            seen.append(headers)
        outcome = left.pop(0) if len(left) > 1 else left[0]
        if isinstance(outcome, BaseException):
            status = get_http_response_status(outcome, 5.0, headers["x-request-id"])
            for message in send_http_response_on_exception(status, response_started=False):
                await send(message)
        elif outcome is not None:
            await outcome(scope, receive, send)

    return TestClient(_apply_middlewares(proxy, proxy_middlewares()))


def _assert_proxy_error(response: Any, status: int, code: str) -> dict[str, Any]:
    from recengine.serve.schemas import ErrorBody

    body = _assert_error_shape(response, status, code)
    ErrorBody.model_validate(body)
    assert response.headers.get_list("x-request-id") == [body["request_id"]]  # one id, the proxy's
    return body


def test_the_proxys_timeout_and_refusals_are_json() -> None:
    from ray.exceptions import RayActorError
    from ray.serve._private.common import DeploymentID
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    body = _assert_proxy_error(_proxy(TimeoutError()).get("/shop/recommend", headers={"X-Request-ID": "r-1"}),
                               408, "timeout")
    assert body["request_id"] == "r-1" and "within 5.0 s" in body["detail"]
    full = _proxy(BackPressureError(num_queued_requests=128, max_queued_requests=128)).post("/shop/recommend")
    _assert_proxy_error(full, 503, "overloaded")
    assert full.headers["retry-after"] == "1"
    told = _proxy(BackPressureError(num_queued_requests=1, max_queued_requests=1, retry_after_s=5)).get("/shop/x")
    assert told.headers["retry-after"] == "5"  # the deployment's own backpressure_config wins
    _assert_proxy_error(_proxy(DeploymentUnavailableError(DeploymentID("recommender", "shop"))).get("/shop/x"),
                        503, "unavailable")
    died = _assert_proxy_error(_proxy(RayActorError()).post("/shop/events"), 500, "replica_failed")
    assert "may or may not have been applied" in died["detail"]
    _assert_proxy_error(_proxy(None).get("/shop/recommend"), 500, "replica_failed")


def test_a_domains_health_with_no_replica_answers_503_starting_as_a_health_body() -> None:
    from recengine.serve.proxy_errors import HEALTH_TIMEOUT_S
    from recengine.serve.schemas import ErrorBody, Health

    seen: list[dict[str, str]] = []
    client = _proxy(TimeoutError(), seen=seen)
    response = client.get("/shop/health", headers={"x-request-timeout-seconds": "0"})
    assert seen[0]["x-request-timeout-seconds"] == str(HEALTH_TIMEOUT_S)  # Ray's own deadline, not the client's
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    body = response.json()
    assert body["status"] == body["code"] == "starting" and body["domain"] == "shop"
    Health.model_validate(body)
    ErrorBody.model_validate(body)


def test_a_domain_that_is_answering_keeps_the_full_timeout_on_health() -> None:
    """A 1 s deadline would fail the /health of a busy, healthy domain: it is only for a domain
    no replica answered lately."""
    from fastapi.responses import JSONResponse

    seen: list[dict[str, str]] = []
    client = _proxy(JSONResponse({"items": []}), TimeoutError(), seen=seen)
    assert client.get("/shop/recommend").status_code == 200  # a replica of shop answered
    late = client.get("/shop/health")
    assert "x-request-timeout-seconds" not in seen[1]
    assert late.status_code == 503 and late.json()["code"] == "timeout" and late.json()["domain"] == "shop"
    client.get("/news/health")  # another domain, never answered: the short deadline
    assert seen[2]["x-request-timeout-seconds"] == "1.0"


def test_the_replicas_own_responses_pass_untouched() -> None:
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

    from recengine.serve.http_errors import error_response

    mine = _proxy(error_response(404, "unknown item 'i9'", "r-2")).get("/shop/similar/i9")
    assert mine.status_code == 404 and mine.json()["detail"] == "unknown item 'i9'"
    plain = _proxy(PlainTextResponse("metrics are off", status_code=503)).get("/shop/metrics")
    assert plain.status_code == 503 and plain.text == "metrics are off"  # has a length: a replica's
    ok = _proxy(JSONResponse({"status": "ok", "domain": "shop"})).get("/shop/health")
    assert ok.status_code == 200 and ok.json() == {"status": "ok", "domain": "shop"}

    async def chunks() -> Any:
        for part in (b"a", b"b", b"c"):
            yield part

    streamed = _proxy(StreamingResponse(chunks(), media_type="text/plain")).get("/shop/export")
    assert streamed.status_code == 200 and streamed.text == "abc"


def test_clients_cannot_set_rays_control_headers_and_unusable_ids_are_replaced() -> None:
    from fastapi.responses import JSONResponse

    seen: list[dict[str, str]] = []
    client = _proxy(JSONResponse({}), seen=seen)
    client.get("/shop/recommend", headers={"x-request-timeout-seconds": "0", "x-request-disconnect-disabled": "?1",
                                           "X-Request-ID": "x" * 65})
    assert "x-request-timeout-seconds" not in seen[0] and "x-request-disconnect-disabled" not in seen[0]
    assert seen[0]["x-request-id"] != "x" * 65  # Ray made a fresh one
    client.get("/shop/recommend", headers={"X-Request-ID": "abc.123"})
    assert seen[1]["x-request-id"] == "abc.123"
    from recengine.serve.proxy_errors import _SANE_REQUEST_ID

    for given in ("abc.123", "x" * 64, "x" * 65, "has space", "", "a\u00e9"):
        assert bool(_SANE_REQUEST_ID.fullmatch(given.encode())) == (sane_request_id(given) == given), given


def test_a_client_that_went_away_gets_nothing() -> None:
    import asyncio

    from recengine.serve.proxy_errors import ProxyErrors

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # the disconnect; Ray then answers nothing (499 in its log)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/shop/recommend", "headers": []}
    asyncio.run(ProxyErrors(proxy)(scope, receive, send))
    assert sent == []


def test_rays_proxy_accepts_the_callback() -> None:
    from ray.serve._private.http_util import validate_http_proxy_callback_return
    from ray.serve._private.utils import call_function_from_import_path

    from recengine.serve.deployment import serve_options
    from recengine.serve.proxy_errors import CALLBACK_ENV, CALLBACK_PATH

    middlewares = validate_http_proxy_callback_return(call_function_from_import_path(CALLBACK_PATH))
    assert len(middlewares) == 1
    assert "controller_options" not in serve_options("127.0.0.1", 8000)  # a local cluster has it in its environment
    options = serve_options("127.0.0.1", 8000, via_controller=True)
    assert options["controller_options"]["runtime_env"]["env_vars"] == {CALLBACK_ENV: CALLBACK_PATH}


def test_local_clusters_start_with_the_proxy_callback_in_their_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from recengine.ray_env import ray_environment
    from recengine.serve.proxy_errors import CALLBACK_ENV, CALLBACK_PATH

    monkeypatch.delenv(CALLBACK_ENV, raising=False)
    ray_environment()
    assert os.environ[CALLBACK_ENV] == CALLBACK_PATH
    monkeypatch.setenv(CALLBACK_ENV, "mine:callback")
    ray_environment()
    assert os.environ[CALLBACK_ENV] == "mine:callback"  # a value already set wins
