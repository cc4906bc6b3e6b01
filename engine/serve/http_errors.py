"""The HTTP API's error model: one JSON shape, ``{"detail", "code", "request_id"}``, for every
failure, and the exception handlers that produce it.

Client mistakes: 400 (a body that is not UTF-8 JSON, or nested too deep), 404 (an unknown item
or route), 413 (a body over the size limit), 422 (a request the models reject, or a
``RequestError`` such as a filter on an unknown column). 503: no model loaded yet. Anything
else is a bug: 500, logged with its traceback (``recengine.serve.guard``). Error details never
echo much of the input: strings in them are cut to :data:`MAX_ECHO_CHARS`. Ray Serve's proxy
answers some failures itself (408 timeout, 503 overloaded, 500 replica_failed): those get the
same shape from ``recengine.serve.proxy_errors``, and are documented here with the rest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from recengine.errors import AuthenticationError, NotFoundError, PermissionDeniedError, RequestError
from recengine.feature_store.errors import IngestError, StoreError
from recengine.serve.live import WriterUnavailable
from recengine.serve.schemas import ErrorBody
from recengine.serve.service import NotReady, ReadOnlyService

logger = logging.getLogger("recengine.serve")

MAX_ECHO_CHARS = 200  # longest piece of a request echoed back in an error
MAX_DETAIL_CHARS = 1_000  # longest error sentence
MAX_REPORTED_ERRORS = 20  # validation problems listed per response

# the status codes' default machine-readable codes
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "body_too_large", 422: "validation_error", 500: "internal_error",
                503: "not_ready"}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description} for status, description in {
        400: "Malformed request: the body is not valid UTF-8 JSON, or is nested too deep.",
        404: "Unknown item (or route).",
        408: "Not answered within the server's time limit (code timeout): the domain is restarting or overloaded.",
        413: "Request body over the size limit.",
        422: "Invalid request: a field the models reject, or a filter the catalogue cannot apply.",
        500: "A bug on the server (the request id finds it in the server log), or the replica answering the "
             "request died before it answered (code replica_failed).",
        503: "No model loaded yet (not_ready), or too many requests already waiting for a replica of the domain "
             "(overloaded; Retry-After says when to retry).",
    }.items()
}
"""The error responses documented on every route (FastAPI ``responses=``)."""


def error_response(status: int, detail: str | list[dict[str, Any]], request_id: str, code: str | None = None,
                   headers: Mapping[str, str] | None = None, exc_info: BaseException | None = None,
                   extra: Mapping[str, Any] | None = None) -> JSONResponse:
    """The one error shape, logged with the request id: 500 at ERROR (with ``exc_info``'s
    traceback), 503 at WARNING, client errors at INFO."""
    if isinstance(detail, str):
        detail = clip(detail, MAX_DETAIL_CHARS)
    code = code or STATUS_CODES.get(status, f"http_{status}")
    level = logging.ERROR if status == 500 else logging.WARNING if status >= 500 else logging.INFO
    logged = detail if isinstance(detail, str) else clip(json.dumps(detail, default=str), MAX_DETAIL_CHARS)
    logger.log(level, "request %s: %d %s: %s", request_id, status, code, logged, exc_info=exc_info)
    content = {"detail": detail, "code": code, "request_id": request_id, **(extra or {})}
    return JSONResponse(status_code=status, content=content, headers=headers)


def request_id_of(request: Request) -> str:
    """The id ``RequestGuard`` gave the request ("-" outside the guard)."""
    return str(getattr(request.state, "request_id", "-"))


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, marked when cut."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def public_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Pydantic's validation errors, JSON-safe and with every echoed input cut short."""
    public = []
    for error in errors[:MAX_REPORTED_ERRORS]:
        location = [part if isinstance(part, int) else clip(str(part)) for part in error.get("loc", ())]
        entry: dict[str, Any] = {"type": error.get("type"), "loc": location, "msg": clip(str(error.get("msg", "")))}
        if "input" in error:
            entry["input"] = _echo(error["input"])
        if error.get("ctx"):
            entry["ctx"] = {key: _echo(value) for key, value in error["ctx"].items()}
        public.append(entry)
    return public


def _echo(value: Any) -> Any:
    """A JSON value small enough to echo: short scalars as they are, anything longer as a cut string."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if isinstance(value, dict | list) and len(text) <= MAX_ECHO_CHARS:
        return value
    return clip(text)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every expected failure in the one error shape."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if broken is not None:  # not JSON at all: a malformed request, not an invalid one
            where = broken.get("loc", ("body", "?"))[-1]
            reason = broken.get("ctx", {}).get("error", "JSON decode error")
            return error_response(400, f"malformed JSON at position {where}: {reason}", request_id_of(request),
                                  "malformed_json")
        return error_response(422, public_errors(errors), request_id_of(request))

    @app.exception_handler(RequestError)
    async def cannot_answer(request: Request, exc: RequestError) -> JSONResponse:
        return error_response(422, str(exc), request_id_of(request), "invalid_request")

    @app.exception_handler(AuthenticationError)
    async def unauthenticated(request: Request, exc: AuthenticationError) -> JSONResponse:
        return error_response(401, str(exc), request_id_of(request), "unauthorized",
                              headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(PermissionDeniedError)
    async def forbidden(request: Request, exc: PermissionDeniedError) -> JSONResponse:
        return error_response(403, str(exc), request_id_of(request), "forbidden")

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return error_response(404, str(exc), request_id_of(request))

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
        return error_response(503, str(exc), request_id_of(request))

    @app.exception_handler(IngestError)
    async def refused_batch(request: Request, exc: IngestError) -> JSONResponse:
        """A write batch the store's rules refuse: nothing of it was stored."""
        where = {"record": exc.row, "field": exc.column} if exc.row is not None or exc.column else {}
        return error_response(422, str(exc), request_id_of(request), "invalid_records", extra=where)

    @app.exception_handler(StoreError)
    async def store_failed(request: Request, exc: StoreError) -> JSONResponse:
        """The store could not take a batch (a full disk): nothing was stored; retry later."""
        return error_response(503, str(exc), request_id_of(request), "store_unavailable",
                              headers={"Retry-After": "5"})

    @app.exception_handler(WriterUnavailable)
    async def writer_down(request: Request, exc: WriterUnavailable) -> JSONResponse:
        return error_response(503, str(exc), request_id_of(request), "writer_unavailable",
                              headers={"Retry-After": "1"})

    @app.exception_handler(ReadOnlyService)
    async def read_only(request: Request, exc: ReadOnlyService) -> JSONResponse:
        return error_response(405, str(exc), request_id_of(request), "read_only")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, default=str)
        return error_response(exc.status_code, detail, request_id_of(request), headers=exc.headers)
