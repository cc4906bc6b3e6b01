"""The HTTP API of one domain, as a FastAPI app.

The same app runs behind Ray Serve (``recengine.serve.deployment``) and directly in tests.
Every error answers ``{"detail", "code", "request_id"}`` (``recengine.serve.http_errors``):
400 a body that is not JSON, 404 an unknown item, 413 a body over 64 KiB, 422 a request the
models or the catalogue reject, 503 no model yet, 500 a bug (logged with its request id).
Every response carries ``X-Request-ID`` (``recengine.serve.guard``). An unknown user gets the
popularity fallback (200), never an error; only reading its history is a 404. ``GET /ui`` is
the domain's dashboard (``recengine.serve.ui``).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from recengine.api_keys import _BEARER, AUTH_RESPONSES, require_key
from recengine.errors import AuthenticationError, ConfigError, NotFoundError, PermissionDeniedError, RequestError
from recengine.feature_store.live_log import LiveAck
from recengine.online.experiments import new_experiment
from recengine.online.schemas import ExperimentReport, ExperimentSpec, ExperimentStart, ExperimentStop, OnlineSummary
from recengine.serve.docs import install_docs
from recengine.serve.guard import MAX_WRITE_BODY_BYTES, RequestGuard
from recengine.serve.http_errors import ERROR_RESPONSES, install_error_handlers, request_id_of
from recengine.serve.metrics import install_metrics, metrics_for
from recengine.serve.schemas import (
    MAX_HISTORY_LIMIT,
    MAX_ID_CHARS,
    MAX_K,
    ErrorBody,
    EventsBatch,
    Health,
    ItemsBatch,
    ModelInfo,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    UserHistoryResponse,
    UsersBatch,
    WriteAck,
    domain_write_models,
)
from recengine.serve.service import RecommendService
from recengine.serve.ui import install_dashboard

ADMIN_KEY_ENV = "RECENGINE_ADMIN_KEY"  # the operator key; unset: /model never shows server paths

Recommend = Callable[[RecommendRequest], Awaitable[RecommendResponse | Exception]]


def build_api(domain: str, get_service: Callable[[], RecommendService],
              recommend: Recommend | None = None, proxied: bool = False) -> FastAPI:
    """A FastAPI app answering for ``domain``; ``recommend`` may be a batched coroutine that
    returns a request's response or the exception it raised. ``proxied``: behind Ray Serve's
    proxy, which sets and echoes ``X-Request-ID`` itself."""
    app = FastAPI(title=f"recengine · {domain}", description=f"Recommendations for the {domain} domain.",
                  responses=ERROR_RESPONSES, docs_url=None, redoc_url=None)
    install_docs(app)  # /docs and /redoc with self-hosted assets: they work offline and under a route prefix
    app.add_middleware(RequestGuard, echo_request_id=not proxied,
                       larger_bodies=dict.fromkeys(("/events", "/items", "/users"), MAX_WRITE_BODY_BYTES))
    install_error_handlers(app)

    async def direct(request: RecommendRequest) -> RecommendResponse | Exception:
        return get_service().recommend_many([request])[0]

    answer = recommend or direct
    writer_key = require_key(lambda: get_service().api_keys, domain)

    async def reader_key(request: Request) -> None:
        """Reads need a key only when the domain is served with ``--require-key-for-reads``."""
        config = get_service().config
        if config is not None and config.require_key_for_reads:
            credentials = await _BEARER(request)
            await writer_key(credentials)

    reads = [Depends(reader_key)]
    guarded: dict[str, Any] = {"dependencies": reads, "responses": READ_AUTH_RESPONSES}  # the read routes
    # GET /metrics under the read-key rule; its middleware is outermost (it counts the guard's refusals)
    install_metrics(app, domain, get_service, **guarded)

    events_batch, items_batch, users_batch = domain_write_models(domain)

    async def post_events(batch: EventsBatch, key: str = Depends(writer_key)) -> WriteAck:  # noqa: B008
        """Record a batch of events (all or none), durable when answered; the next
        recommendation for these users reflects them, on every replica."""
        records = [event.model_dump(exclude_none=True) for event in batch.events]
        return _ack(await get_service().write("events", records), get_service())

    async def post_items(batch: ItemsBatch, key: str = Depends(writer_key)) -> WriteAck:  # noqa: B008
        """Insert or update items (all or none): recommendable and found by /similar once answered."""
        return _ack(await get_service().write("items", _records(batch.items), batch.replace), get_service())

    async def post_users(batch: UsersBatch, key: str = Depends(writer_key)) -> WriteAck:  # noqa: B008
        """Insert or update users (all or none); an update changes only the fields it names."""
        return _ack(await get_service().write("users", _records(batch.users), batch.replace), get_service())

    # the domain's own batch models (its event types and columns), so /docs shows what it takes
    for path, route, batch_model in (("/events", post_events, events_batch), ("/items", post_items, items_batch),
                                     ("/users", post_users, users_batch)):
        route.__annotations__["batch"] = batch_model
        app.post(path, responses=WRITE_RESPONSES, response_model=WriteAck)(route)

    @app.post("/recommend", response_model=RecommendResponse, **guarded)
    async def recommend_items(request: RecommendRequest, http: Request) -> RecommendResponse:
        """Top-k items for a user, with scores and reasons; unknown users get popular items.
        The answer's ``request_id`` names what it showed (logged as impressions): send it
        with the events it leads to."""
        request._request_id = request_id_of(http)
        outcome = await answer(request)
        if isinstance(outcome, Exception):
            raise outcome  # this request's own error: the handlers answer 422/404/503, or 500
        metrics_for(domain).record_recommendation(outcome.model, outcome.arm, outcome.experiment, len(outcome.items))
        return outcome

    @app.get("/similar/{item_id}", response_model=list[RecommendedItem], **guarded)
    async def similar(item_id: str = Path(..., min_length=1, max_length=MAX_ID_CHARS),
                      k: int = Query(10, ge=1, le=MAX_K)) -> list[RecommendedItem]:
        """Items closest to ``item_id`` in the model's item space."""
        return get_service().similar(item_id, k)

    @app.get("/users/{user_id}/history", response_model=UserHistoryResponse, **guarded)
    async def user_history(user_id: str = Path(..., min_length=1, max_length=MAX_ID_CHARS),
                           limit: int = Query(20, ge=1, le=MAX_HISTORY_LIMIT)) -> UserHistoryResponse:
        """The user's latest ``limit`` events, newest first, as this replica sees them (the
        snapshot and the live events since); 404 for a user the model does not know."""
        return get_service().user_history(user_id, limit)

    @app.get("/health", response_model=Health, responses={503: {"model": Health, "description": "Still loading."}})
    async def health() -> JSONResponse:
        """200 when a model and snapshot are loaded, 503 (with the same body) otherwise."""
        state = get_service().health()
        return JSONResponse(status_code=200 if state.status == "ok" else 503, content=state.model_dump())

    @app.get("/model", response_model=ModelInfo)
    async def model(x_admin_key: str | None = Header(None, max_length=256)) -> ModelInfo:
        """Which bundle (name, version) and snapshot version are serving; the bundle's path
        on the server only for the operator (``X-Admin-Key`` equal to RECENGINE_ADMIN_KEY)."""
        return get_service().model_info(show_path=is_operator(x_admin_key))

    @app.get("/experiment", response_model=ExperimentReport, **guarded)
    async def experiment(k: int = Query(10, ge=1, le=MAX_K, description="CTR@k: clicks within the top k count."),
                         window_hours: float = Query(24.0, gt=0, le=24 * 90, description=ATTRIBUTION_WINDOW)
                         ) -> ExperimentReport:
        """The running (else latest) experiment: per-arm impressions, clicks, CTR with 95%
        intervals, the test and its verdict, from the logged data alone."""
        return await get_service().experiment_report(k, window_hours)

    @app.get("/online", response_model=OnlineSummary, **guarded)
    async def online(hours: float = Query(24.0, gt=0, le=24 * 90, description="The window of requests reported."),
                     k: int = Query(10, ge=1, le=MAX_K, description="CTR@k: clicks within the top k count."),
                     window_hours: float = Query(24.0, gt=0, le=24 * 90, description=ATTRIBUTION_WINDOW)
                     ) -> OnlineSummary:
        """Online metrics per serving model over the last ``hours``, events written per minute
        over the last hour, and the running (or last) experiment."""
        return await get_service().online_summary(hours, k, window_hours)

    operator = [Depends(require_operator)]

    @app.post("/admin/experiment", response_model=ExperimentSpec, status_code=201, dependencies=operator,
              responses=ADMIN_RESPONSES)
    async def start_experiment(start: ExperimentStart) -> ExperimentSpec:
        """Start an experiment (operator key in ``X-Admin-Key``): every replica loads its arms
        and routes each user to one (A/B) or interleaves both."""
        try:
            spec = new_experiment(domain, [(a.name, a.bundle) for a in start.arms], start.split, start.mode,
                                  start.min_effect)
            return await get_service().start_experiment(spec)
        except (ConfigError, NotFoundError) as exc:  # the body names what cannot run: 422, not 404/500
            raise RequestError(str(exc)) from None

    @app.post("/admin/experiment/stop", response_model=ExperimentSpec, dependencies=operator,
              responses=ADMIN_RESPONSES)
    async def stop_experiment(stop: ExperimentStop) -> ExperimentSpec:
        """Stop the running experiment; ``promote`` makes that arm the domain's model."""
        try:
            return await get_service().stop_experiment(stop.promote)
        except ConfigError as exc:  # an arm the experiment lacks
            raise RequestError(str(exc)) from None

    install_dashboard(app, domain)  # GET /ui: a static page that reads the routes above
    return app


def _records(records: list[Any]) -> list[dict[str, Any]]:
    """Records as the fields they name (a partial update leaves the others as stored)."""
    return [r if isinstance(r, dict) else r.model_dump(exclude_unset=True) for r in records]


def _ack(ack: LiveAck, service: RecommendService) -> WriteAck:
    return WriteAck(seq=ack.seq, accepted=ack.accepted, duplicates=ack.duplicates,
                    visible=(service.live_seq() or 0) >= ack.seq)


READ_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {**answer, "description": answer["description"] + " Only when the domain is served with "
                                                            "--require-key-for-reads."}
    for code, answer in AUTH_RESPONSES.items()}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES, 405: {"model": ErrorBody, "description": "The domain is served read-only (without its store)."}}
ATTRIBUTION_WINDOW = ("An event without a request_id is attributed to the latest impression of its item for its user "
                      "at most this many hours earlier.")
ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No X-Admin-Key header."},
    403: {"model": ErrorBody, "description": "Not the operator key, or none is configured on the server."},
}


async def require_operator(x_admin_key: str | None = Header(None, max_length=256)) -> None:
    """Admin routes need the operator key (``X-Admin-Key`` equal to RECENGINE_ADMIN_KEY)."""
    if not os.environ.get(ADMIN_KEY_ENV):
        raise PermissionDeniedError(f"admin routes are off: the server has no {ADMIN_KEY_ENV}")
    if x_admin_key is None:
        raise AuthenticationError("admin routes need the operator key in the X-Admin-Key header")
    if not is_operator(x_admin_key):
        raise PermissionDeniedError("X-Admin-Key is not the operator key")


def is_operator(given: str | None) -> bool:
    """Whether ``given`` is the operator key (compared in constant time); never without one configured."""
    expected = os.environ.get(ADMIN_KEY_ENV, "")
    return bool(expected) and given is not None and hmac.compare_digest(given.encode(), expected.encode())
