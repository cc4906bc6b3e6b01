"""The application at ``/``: every path no domain serves gets the API's JSON 404 (Ray's
proxy would answer it in plain text), naming the domains that are served."""

from __future__ import annotations

from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from recengine.serve.guard import RequestGuard
from recengine.serve.http_errors import error_response, request_id_of


def build_root_api(domains: list[str]) -> FastAPI:
    """``GET /`` lists the domains; any other path is a JSON 404."""
    app = FastAPI(title="recengine", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestGuard, echo_request_id=False)
    served = [f"/{d}" for d in domains]

    @app.get("/")
    async def index() -> dict[str, Any]:
        return {"domains": served, "docs": [f"{prefix}/docs" for prefix in served]}

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def unknown(request: Request, path: str) -> JSONResponse:
        return error_response(404, f"no route /{path[:200]}; the served domains are {', '.join(served)} "
                                   f"(each with /recommend, /similar/{{item_id}}, /events, /health, /docs)",
                              request_id_of(request), "not_found")

    return app


@serve.deployment(name="root", ray_actor_options={"num_cpus": 0.01}, logging_config={"enable_access_log": False})
@serve.ingress()
class RootRouter:
    """A replica of the ``/`` application (a few KB; no model)."""

    def __init__(self, domains: list[str]) -> None:
        self.domains = domains

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_root_api(self.domains)


def root_application(domains: list[str]) -> serve.Application:
    return cast(serve.Deployment, RootRouter).bind(domains)
