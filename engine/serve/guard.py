"""``RequestGuard``: the ASGI middleware every request of the HTTP API passes first.

- Gives each request an id: the client's ``X-Request-ID`` when it is sane (1-64 characters
  of ``A-Za-z0-9._:-``), else a fresh one; every response carries it back in ``X-Request-ID``
  and every error body and error log line names it. Behind Ray Serve's proxy
  (``echo_request_id=False``) the proxy already gives each request an ``X-Request-ID`` (the
  client's, or its own) and echoes it on the response, so the guard only reads it: a second
  header would repeat it.
- Refuses a body over :data:`MAX_BODY_BYTES` with 413 before the app parses it (declared
  ``Content-Length`` or counted while streaming), a body that is not UTF-8 or is nested
  deeper than :data:`MAX_JSON_DEPTH` with 400.
- Turns any exception the app lets through (a bug) into a JSON 500 and logs its traceback
  with the request id, instead of the server's plain-text 500.
"""

from __future__ import annotations

import re
import uuid

from ray.exceptions import TaskCancelledError
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recengine.serve.http_errors import error_response

MAX_BODY_BYTES = 64 * 1024  # a recommend request is a few hundred bytes; its bounded lists fit well within
MAX_WRITE_BODY_BYTES = 1024 * 1024  # a write batch of 1,000 records
MAX_JSON_DEPTH = 8  # the API's deepest request ({"context": {"filters": {"c": [...]}}}) nests 4 deep
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestGuard:
    """Request ids, body limits and JSON 500s for an ASGI app (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_JSON_DEPTH,
                 echo_request_id: bool = True, larger_bodies: dict[str, int] | None = None) -> None:
        """``larger_bodies``: path suffix → body limit for routes that take more (writes)."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.larger_bodies = larger_bodies or {}
        self.max_depth = max_depth
        self.echo_request_id = echo_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = sane_request_id(headers.get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if self.echo_request_id:
                    MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        limit = self._limit(scope.get("path", ""))
        try:
            declared = headers.get("content-length", "")
            refusal = self._too_large(limit) if declared.isdigit() and int(declared) > limit else None
            body = b""
            if refusal is None:
                read = await self._read_body(receive, limit)
                refusal = self._check(read, limit)
                body = read or b""
            if refusal is not None:
                status, detail, code = refusal
                await error_response(status, detail, request_id, code)(scope, receive, send_with_id)
                return
            await self.app(scope, _replay(body, receive), send_with_id)
        except TaskCancelledError:  # the client went away while its body was read: nobody to answer
            return
        except Exception as exc:  # a bug: answer in the error shape, log the traceback
            if started:
                raise
            response = error_response(500, "internal server error", request_id, exc_info=exc)
            await response(scope, receive, send_with_id)

    def _limit(self, path: str) -> int:
        return next((limit for suffix, limit in self.larger_bodies.items() if path.endswith(suffix)),
                    self.max_body_bytes)

    async def _read_body(self, receive: Receive, limit: int) -> bytes | None:
        """The whole body, or None once it grows past the limit (the rest is not read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _check(self, body: bytes | None, limit: int) -> tuple[int, str, str] | None:
        """(status, detail, code) refusing ``body``, or None when the app may parse it."""
        if body is None:
            return self._too_large(limit)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return 400, f"the body is not UTF-8 (invalid byte at position {exc.start})", "invalid_encoding"
        if json_depth(body, self.max_depth) > self.max_depth:
            return 400, f"the JSON body nests deeper than {self.max_depth} levels", "too_deep"
        return None

    def _too_large(self, limit: int) -> tuple[int, str, str]:
        return 413, f"the body is larger than {limit} bytes", "body_too_large"


def sane_request_id(given: str | None) -> str:
    """The client's request id when it is safe to log and echo, else a fresh one."""
    if given is not None and _SANE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(body: bytes, limit: int) -> int:
    """How deep ``body``'s arrays and objects nest (brackets inside strings do not count);
    stops counting past ``limit``. Bodies with at most ``limit`` brackets skip the scan; the
    rest are scanned bracket by bracket, strings removed first by one regex (a 1 MB write
    batch in a few ms, not a Python loop per byte)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then defers to the server's."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
