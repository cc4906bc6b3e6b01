"""The domain's dashboard, ``GET /<domain>/ui``: one static page that reads the API the replica
already serves (``/model``, ``/recommend``, ``/users/{id}/history``, ``/experiment``, ``/online``).

The page, its script and its stylesheet ship beside this module as package data, so the page
opens offline: no Node build, no CDN. The HTML is a shell that holds no data (only the domain's
name and the route prefix it is served under), so it needs no key even when reads do: the
script asks for the key, keeps it in the tab's ``sessionStorage`` and sends it as
``Authorization: Bearer`` on its reads. The script writes every value with DOM text
nodes, never as markup, and the page's Content-Security-Policy allows only its own script and
stylesheet: an item title such as ``<img onerror=...>`` shows as text and cannot run.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files

from fastapi import FastAPI, Path, Request
from fastapi.responses import HTMLResponse, Response

from recengine.errors import NotFoundError
from recengine.serve.docs import root_path

UI_FILES = files(__name__)  # dashboard.html, dashboard.js, dashboard.css
PAGE = "dashboard.html"
ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
# only the page's own script and stylesheet run; it fetches only its own origin
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def read_ui_file(name: str) -> str:
    """One of the dashboard's files as shipped in the package."""
    return (UI_FILES / name).read_text(encoding="utf-8")


def render_page(domain: str, root: str) -> str:
    """The page shell with the domain's name and the route prefix (``/news``; "" at the top)."""
    return read_ui_file(PAGE).replace("{{domain}}", escape(domain)).replace("{{root}}", escape(root, quote=True))


def install_dashboard(app: FastAPI, domain: str) -> None:
    """``GET /ui`` (the page) and ``GET /ui/{asset}`` (its script and stylesheet) on ``app``."""
    assets = {name: read_ui_file(name) for name in ASSETS}  # read once: the files never change while serving

    @app.get("/ui", include_in_schema=False)
    async def dashboard(request: Request) -> HTMLResponse:
        return HTMLResponse(render_page(domain, root_path(request)), headers=HEADERS)

    @app.get("/ui/{asset}", include_in_schema=False)
    async def dashboard_asset(asset: str = Path(..., max_length=64)) -> Response:
        if asset not in assets:
            raise NotFoundError(f"no dashboard file {asset!r}")
        return Response(assets[asset], media_type=ASSETS[asset], headers=HEADERS)
