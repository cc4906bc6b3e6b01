"""``ProxyErrors``: the ASGI middleware Ray Serve's HTTP proxy runs around its own app, so the
answers the proxy makes itself come in the API's JSON error shape, not Ray's plain text.

Ray 2.60 removed ``HTTPOptions.middlewares`` (a non-empty list raises); the proxy's one hook
left is ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``, a function it calls at start for a list
of Starlette ``Middleware``. The proxy process must have that variable: a local cluster gets it
in its nodes' environment (``recengine.ray_env.ray_environment``), a cluster joined or deployed
to through the Serve controller's runtime env, which the proxy inherits
(``recengine.serve.deployment.serve_options``). This module is imported inside the proxy and by
``ray_env``: it needs only the standard library (Starlette once the proxy asks for the
middleware; the rest of ``recengine.serve`` pulls in torch).

The proxy's own answers are told apart from a replica's by their form: a status of 400 or
more, ``content-type: text/plain`` and no ``content-length`` (every response of a replica's
FastAPI app has a length, and its errors are JSON). They become ``{"detail", "code",
"request_id"}`` with the status kept: 408 ``timeout``, 503/429 ``overloaded`` (more than
``max_queued_requests`` waiting; ``Retry-After``), 503 ``unavailable``, 404 ``not_found``. A
request the proxy leaves unanswered (its replica died: Ray sends nothing and uvicorn would say
"Internal Server Error") gets a JSON 500 ``replica_failed``, unless the client went away.

``GET /<domain>/health`` for a domain no replica has answered through this proxy in the last
:data:`LIVE_WINDOW_S` (first load; or down a while) gets the proxy's per-request deadline of
:data:`HEALTH_TIMEOUT_S` (Ray's ``x-request-timeout-seconds`` header, so Ray itself cancels the
queued call), and its 408 becomes a 503 ``starting``: reported at once, not after the 5 s
request timeout. A domain that is answering keeps the full timeout on ``/health`` (a deadline of
1 s would fail the health of a busy, healthy domain), and its late ``/health`` is a 503
``timeout``. Every ``/health`` answer made here is also a ``Health`` (``status``, ``domain``).
Clients may not set Ray's control headers (``x-request-timeout-seconds`` would lift the
timeout, ``x-request-disconnect-disabled`` keep a gone client's request running): they are
dropped, as is an ``X-Request-ID`` that ``RequestGuard`` would refuse (Ray then makes a fresh
one). Everything else streams through untouched.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.middleware import Middleware
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK_PATH = "recengine.serve.proxy_errors:proxy_middlewares"
HEALTH_TIMEOUT_S = 1.0  # a replica answers /health in ms; none within this, and none lately: the domain is not up
LIVE_WINDOW_S = 10.0  # a domain a replica answered within this long is up (Serve checks replicas every 5 s)
MAX_TRACKED = 256  # path prefixes remembered (unknown paths must not grow the table without bound)
RETRY_AFTER_S = 1  # a refused request may come back this soon (a replica frees a slot in ms)
MAX_PATH_ECHO = 200

_REQUEST_ID = b"x-request-id"
_TIMEOUT_HEADER = b"x-request-timeout-seconds"
_RAY_CONTROL_HEADERS = frozenset({_TIMEOUT_HEADER, b"x-request-disconnect-disabled"})
# the same rule as recengine.serve.guard.sane_request_id (not importable here: it pulls in the model stack)
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
_TIMED_OUT_AFTER = re.compile(r"after ([0-9.]+)s")


def proxy_middlewares() -> list[Middleware]:
    """What Ray's proxy wraps its app in (the function ``CALLBACK_ENV`` names)."""
    from starlette.middleware import Middleware

    return [Middleware(ProxyErrors)]


def proxy_env_vars() -> dict[str, str]:
    """The environment that makes a Serve proxy load :func:`proxy_middlewares`."""
    return {CALLBACK_ENV: CALLBACK_PATH}


class ProxyErrors:
    """JSON for the proxy's own errors, and a prompt 503 for ``/<domain>/health`` (module docstring)."""

    def __init__(self, app: ASGIApp, health_timeout_s: float = HEALTH_TIMEOUT_S,
                 live_window_s: float = LIVE_WINDOW_S) -> None:
        self.app = app
        self.health_timeout = str(health_timeout_s).encode()
        self.live_window_s = live_window_s
        self.answered: dict[str, float] = {}  # path prefix (domain) → when a replica last answered for it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        domain = path.split("/", 2)[1] if path.startswith("/") else ""
        health = bool(domain) and path == f"/{domain}/health" and scope["method"] in ("GET", "HEAD")
        quick = health and time.monotonic() - self.answered.get(domain, -1e9) > self.live_window_s
        _clean_headers(scope, self.health_timeout if quick else None)
        exchange = _Exchange(self, scope, receive, send, domain, health, quick)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:  # a failure in the proxy itself: answer it in JSON too, and let it be logged
            await exchange.finish()
            raise
        await exchange.finish()

    def replica_answered(self, domain: str) -> None:
        if domain not in self.answered and len(self.answered) >= MAX_TRACKED:
            self.answered.clear()
        self.answered[domain] = time.monotonic()


def _clean_headers(scope: Scope, deadline: bytes | None) -> None:
    """Drop clients' Ray control headers and unusable request ids; set ``deadline`` (seconds)."""
    headers = scope["headers"]
    if deadline is None:
        for key, value in headers:  # a plain loop: this runs for every request
            if key in _RAY_CONTROL_HEADERS or (key == _REQUEST_ID and not _SANE_REQUEST_ID.fullmatch(value)):
                break
        else:
            return  # the usual request: nothing to change
    kept = [(key, value) for key, value in headers if key not in _RAY_CONTROL_HEADERS
            and not (key == _REQUEST_ID and not _SANE_REQUEST_ID.fullmatch(value))]
    if deadline is not None:
        kept.append((_TIMEOUT_HEADER, deadline))
    scope["headers"] = kept


class _Exchange:
    """One request's passage through the proxy: passes the replica's response on, holds back
    one the proxy made itself and answers it in JSON."""

    __slots__ = ("owner", "scope", "_receive", "_send", "domain", "health", "quick", "started", "held",
                 "held_body", "disconnected")

    def __init__(self, owner: ProxyErrors, scope: Scope, receive: Receive, send: Send, domain: str,
                 health: bool, quick: bool) -> None:
        self.owner = owner
        self.scope = scope
        self._receive = receive
        self._send = send
        self.domain = domain
        self.health = health
        self.quick = quick  # /health under the short deadline
        self.started = False  # a response went to the client
        self.held: Message | None = None  # the proxy's own response start, held back
        self.held_body: list[bytes] = []
        self.disconnected = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.held is not None:
            if kind == "http.response.body":
                self.held_body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._answer_held()
            return
        if kind == "http.response.start":
            if message["status"] >= 400 and _is_proxy_answer(message["headers"]):
                self.held = message
                return
            self.started = True
            self.owner.replica_answered(self.domain)
        await self._send(message)

    async def finish(self) -> None:
        """After the proxy is done: answer what it held back or left unanswered."""
        if self.started:
            return
        if self.held is not None:
            await self._answer_held()
        elif not self.disconnected:
            await self._answer(500, "")

    async def _answer_held(self) -> None:
        assert self.held is not None
        status, headers = self.held["status"], self.held["headers"]
        self.held = None
        text = b"".join(self.held_body).decode("utf-8", "replace")
        retry_after = next((value for key, value in headers if key.lower() == b"retry-after"), None)
        await self._answer(status, text, retry_after)

    async def _answer(self, status: int, text: str, retry_after: bytes | None = None) -> None:
        self.started = True
        domain = self.domain if self.health else None
        status, code, detail = describe(status, text, self.scope["path"], domain, self.quick)
        request_id = next((value for key, value in self.scope["headers"] if key == _REQUEST_ID), b"-")
        content: dict[str, Any] = {"detail": detail, "code": code, "request_id": request_id.decode("latin-1")}
        if domain is not None:  # /health's answer is a Health too
            content = {"status": code, "domain": domain, **content}
        body = json.dumps(content).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (_REQUEST_ID, request_id)]
        if status in (429, 503):
            headers.append((b"retry-after", retry_after or str(RETRY_AFTER_S).encode()))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


def _is_proxy_answer(headers: list[tuple[bytes, bytes]]) -> bool:
    """Ray's form for the proxy's own answers: text/plain and no content-length."""
    plain = False
    for key, value in headers:
        key = key.lower()
        if key == b"content-length":
            return False
        if key == b"content-type":
            plain = value.startswith(b"text/plain")
    return plain


def describe(status: int, text: str, path: str, health_domain: str | None = None,
             quick: bool = False) -> tuple[int, str, str]:
    """(status, code, detail) for the proxy's answer ``status`` with text ``text`` (500 and no
    text: it sent nothing); ``health_domain``: a ``/health`` of that domain, ``quick`` under
    the short deadline."""
    if status == 408:
        limit = _TIMED_OUT_AFTER.search(text)
        within = f"within {limit.group(1)} s" if limit else "in time"
        if health_domain is not None and quick:
            return 503, "starting", (f"no replica of {health_domain!r} answered {within}, nor lately: the domain "
                                     "is starting or restarting")
        if health_domain is not None:
            return 503, "timeout", f"{health_domain!r} did not answer {within}: it is overloaded or restarting"
        return 408, "timeout", (f"the request was not answered {within} (the server's limit): its domain is "
                                "restarting or overloaded; retry later")
    if status in (429, 503) and "backpressure" in text:
        return status, "overloaded", ("too many requests are already waiting for a replica of this domain (it is "
                                      "overloaded, or its replicas are down or restarting); retry in a moment")
    if status == 503 and "is unavailable" in text:
        return 503, "unavailable", ("the domain's deployment is not available (being deployed or deleted, or it "
                                    "failed to deploy)")
    if status == 503:
        return 503, "unavailable", text.strip()[:1_000] or "the service is unavailable"
    if status == 404:
        shown = path if len(path) <= MAX_PATH_ECHO else f"{path[:MAX_PATH_ECHO]}…"
        return 404, "not_found", f"no application serves {shown}"
    if status == 500 and not text:
        return 500, "replica_failed", ("the request failed before it was answered: the replica serving it died or "
                                       "failed (a write may or may not have been applied); retry")
    return status, f"http_{status}", text.strip()[:1_000] or f"HTTP {status}"
