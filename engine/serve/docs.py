"""The HTTP API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served
with no internet: FastAPI's own pages load their scripts from cdn.jsdelivr.net and show a blank
page offline, so these load them from the app itself, under :data:`ASSETS_URL`.

The assets are the Swagger UI and ReDoc builds the ``fastapi-offline`` package ships. Every
URL in the pages starts with the request's ``root_path``: behind Ray Serve the app answers
under its route prefix (``/news``), and the browser has to ask for ``/news/docs/assets/...``.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
ASSETS_DIR = files("fastapi_offline") / "static"  # swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the self-hosted assets and the two pages on ``app`` (built with ``docs_url=None``
    and ``redoc_url=None``, so FastAPI adds no CDN pages of its own)."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS_DIR)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = root_path(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters)

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = root_path(request)
        return get_redoc_html(
            openapi_url=root + openapi_url, title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)


def root_path(request: Request) -> str:
    """The prefix the app is served under ("" when at the top), without a trailing slash."""
    return str(request.scope.get("root_path", "")).rstrip("/")
