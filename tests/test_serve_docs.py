"""``/docs`` and ``/redoc`` load every asset from the app itself (they work offline), and under
a route prefix (Ray Serve's ``/news``) every URL in the pages carries the prefix."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from recengine.serve.api import build_api
from recengine.serve.service import RecommendService

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
BROWSER = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                if (path := shutil.which(name))), None)


def _no_service() -> RecommendService:
    raise AssertionError("the docs pages must not need a model")


def _app() -> FastAPI:
    return build_api("news", _no_service)


class _PageURLs(HTMLParser):
    """Every URL an HTML page makes the browser fetch: script and link sources, ReDoc's spec."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "redoc": "spec-url"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def page_urls(html: str) -> list[str]:
    """The asset URLs of ``html`` and the OpenAPI URL Swagger UI's inline script loads."""
    parser = _PageURLs()
    parser.feed(html)
    return parser.urls + re.findall(r"\burl: '([^']+)'", html)


@pytest.mark.parametrize("page, assets", [
    ("/docs", {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/assets/favicon.png",
               "/openapi.json"}),
    ("/redoc", {"/docs/assets/redoc.standalone.js", "/docs/assets/favicon.png", "/openapi.json"}),
])
@pytest.mark.parametrize("root", ["", "/news"])
def test_docs_pages_load_their_assets_from_the_app(page: str, assets: set[str], root: str) -> None:
    client = TestClient(_app(), root_path=root)
    response = client.get(root + page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    urls = page_urls(response.text)
    assert set(urls) == {root + asset for asset in assets}  # nothing from a CDN, and all under the prefix
    for url in urls:
        fetched = client.get(url)
        expected = CONTENT_TYPES[url[url.rindex("."):]]
        assert fetched.status_code == 200 and fetched.headers["content-type"].startswith(expected), url
        assert fetched.content, url


def test_an_unknown_asset_is_the_json_404() -> None:
    response = TestClient(_app()).get("/docs/assets/no-such-file.js")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


@pytest.fixture(scope="module")
def prefixed_server() -> Iterator[str]:
    """The app mounted under ``/news`` (as Ray Serve mounts it), served by uvicorn on a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Mount("/news", _app())]), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/news"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.mark.skipif(BROWSER is None, reason="no chromium to render the pages")
@pytest.mark.parametrize("page, rendered", [
    ("/docs", 'data-path="/recommend"'),  # Swagger UI drew the operations from the spec
    ("/redoc", 'data-role="redoc-summary"'),  # ReDoc drew its summary of the API
])
def test_docs_pages_render_in_a_browser_offline(prefixed_server: str, page: str, rendered: str) -> None:
    # every host name but the local server's address fails to resolve: an asset from a CDN cannot load
    dom = subprocess.run(
        [str(BROWSER), "--headless", "--no-sandbox", "--disable-gpu",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         "--virtual-time-budget=10000", "--dump-dom", prefixed_server + page],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert rendered in dom
