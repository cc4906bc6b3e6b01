"""The dashboard (``GET /<domain>/ui``) in a real browser: headless Chromium (Debian's
``chromium``; .ci/run installs it, and these tests skip where it is absent) loads the page
from a domain served by Ray Serve with its writer, runs its script, and the rendered DOM is
read back (``--dump-dom``) and compared with what the API answers for the same request.

The domain is served twice from one bundle: open, and with ``require_key_for_reads`` (the
page then shows only its key prompt until a key is given, here in the URL fragment). An
item title with markup is posted live and must show as text. The experiment and online
panels are also rendered from real ``ExperimentReport``/``OnlineSummary`` objects served by
a small in-process app (a fixture for rendering; the served domain answers them itself
once a run has logged data).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import polars as pl
import pytest

from benchmarks.dashboard_screenshot import find_browser, run_browser
from recengine.api_keys import ApiKeys, keys_path
from recengine.live_writer import start_writer
from recengine.project import prepare_domain, resolve_targets
from recengine.serve.deployment import domain_application, http_options
from tests.conftest import free_port

BROWSER = find_browser()
pytestmark = [pytest.mark.ray, pytest.mark.skipif(
    BROWSER is None, reason="needs a headless Chromium on PATH (Debian: apt-get install chromium; .ci/run has it)")]

DOMAIN = "ecommerce"
LOCKED = f"{DOMAIN}-locked"  # the same domain, served with require_key_for_reads
MARKUP_TITLE = ("<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
                "<script>document.title='pwned'</script><b id=\"pwned\">bold</b> & co")


# -- the rendered DOM, as a small tree ---------------------------------------------------
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str | None = None) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                if tag is None or child.tag == tag:
                    yield child
                yield from child.all(tag)

    def by_id(self, element_id: str) -> Node | None:
        return next((n for n in self.all() if n.attrs.get("id") == element_id), None)

    def get(self, element_id: str) -> Node:
        found = self.by_id(element_id)
        assert found is not None, f"no #{element_id} in the page"
        return found

    def rows(self) -> list[Node]:
        """A table's body rows."""
        body = next(self.all("tbody"), None)
        return [] if body is None else [c for c in body.children if isinstance(c, Node) and c.tag == "tr"]


def cells(row: Node) -> list[str]:
    return [c.text().strip() for c in row.children if isinstance(c, Node) and c.tag == "td"]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    return builder.root


def render(url: str) -> Node:
    assert BROWSER is not None
    return parse(run_browser(BROWSER, url, dump_dom=True))


# -- the served domain ---------------------------------------------------------------------
@dataclass
class Served:
    base: str
    secret: str
    bundle: Path
    snapshot: Path
    events: pl.DataFrame
    items: pl.DataFrame

    def client(self, app: str = DOMAIN, key: bool = False) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.secret}"} if key else {}
        return httpx.Client(base_url=f"{self.base}/{app}", headers=headers, timeout=60)

    def active_users(self) -> list[str]:
        """Users with the most stored events first (the model knows them)."""
        counts = self.events.group_by("user_id").len().sort(["len", "user_id"], descending=[True, False])
        return [str(u) for u in counts["user_id"]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, ray_cluster: Any) -> Iterator[Served]:
    from ray import serve

    project = tmp_path_factory.mktemp("dashboard")
    prepared = prepare_domain(project, DOMAIN, users=300, items=200, events=5_000, epochs=1, progress=False)
    _, secret = ApiKeys(keys_path(project)).create(DOMAIN)
    target = resolve_targets(project, [DOMAIN])[0]
    writer = start_writer(target.store)
    serve.shutdown()  # Serve keeps the HTTP port of its first start: drop one another module left running
    port = free_port()
    serve.start(http_options=http_options("127.0.0.1", port))
    bundle = prepared.trained.bundle_path.resolve()
    for name, locked in ((DOMAIN, False), (LOCKED, True)):
        serve.run(domain_application(DOMAIN, bundle, target.snapshot, 0.25, store=target.store,
                                     keys=keys_path(project), require_key_for_reads=locked),
                  name=name, route_prefix=f"/{name}")
    base = f"http://127.0.0.1:{port}"
    for name in (DOMAIN, LOCKED):
        warm_up(f"{base}/{name}", secret)
    data = prepared.paths["data"]
    try:
        yield Served(base, secret, bundle, Path(target.snapshot),
                     pl.read_parquet(data / "events.parquet"), pl.read_parquet(data / "items.parquet"))
    finally:
        serve.shutdown()
        ray_cluster.kill(writer, no_restart=True)


def warm_up(url: str, secret: str, timeout_s: float = 120.0) -> None:
    """Until the app answers a recommendation: the first requests on a busy machine can outlast
    the proxy's 5 s limit (408) while the replica finishes starting."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        while True:
            try:
                if client.post("/recommend", json={"history": [], "k": 1}).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{url} answered no recommendation within {timeout_s:.0f} s"
            time.sleep(0.5)


def answered(response: httpx.Response) -> Any:
    assert response.status_code == 200, f"{response.request.url}: {response.status_code} {response.text[:300]}"
    return response.json()


def settled(client: httpx.Client, path: str, deadline_s: float = 60.0, **params: Any) -> httpx.Response:
    """GET ``path``, asked again while the server answers "retry later" (408 timeout, 503
    overloaded or restarting), as its error says a client should: on a loaded machine the
    test's own reference request must not stand in for the page's answer."""
    deadline = time.monotonic() + deadline_s
    while (response := client.get(path, params=params)).status_code in (408, 503) and time.monotonic() < deadline:
        time.sleep(0.5)
    return response


def recommended(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/recommend", json={"k": 10, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()


def assert_recommendations_shown(dom: Node, expected: dict[str, Any]) -> None:
    """The page's recommendation rows are the API's answer: ids, titles, scores, reasons."""
    rows = dom.get("recs-table").rows()
    assert [r.attrs["data-item-id"] for r in rows] == [i["item_id"] for i in expected["items"]]
    for row, item in zip(rows, expected["items"]):
        rank, item_id, title, score, _ = cells(row)
        assert (item_id, title, score) == (item["item_id"], item["title"] or "–", f"{item['score']:.3f}")
        reasons = [span.text() for span in row.all("span") if "reason" in span.attrs.get("class", "")]
        assert reasons == item["reasons"] and reasons, f"reasons of {item_id}: page {reasons}, API {item['reasons']}"


def assert_bars_are(dom: Node, per_minute: list[dict[str, Any]]) -> None:
    """One bar per minute of the last hour: the minutes the API counted events in have their
    count, every other minute none."""
    bars = list(dom.get("events-bars").all("rect"))
    drawn = {datetime.fromisoformat(b.attrs["data-minute"]): int(b.attrs["data-events"]) for b in bars}
    counted = {datetime.fromisoformat(m["minute"]): m["events"] for m in per_minute}
    assert len(bars) in (60, 61) and len(drawn) == len(bars)  # 61: the minute turned while the page loaded
    assert {minute: n for minute, n in drawn.items() if n} == {minute: n for minute, n in counted.items() if n}
    assert set(counted) <= set(drawn)


# -- tests -----------------------------------------------------------------------------------
def test_the_page_is_a_static_shell_with_its_own_assets(served: Served) -> None:
    for app in (DOMAIN, LOCKED):  # no key needed for the shell: it holds no data
        with served.client(app) as client:
            page = client.get("/ui")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert f'src="/{app}/ui/dashboard.js"' in page.text and f'href="/{app}/ui/dashboard.css"' in page.text
            assert not any(item in page.text for item in served.items["item_id"].to_list())
            script = client.get("/ui/dashboard.js")
            assert script.status_code == 200 and "javascript" in script.headers["content-type"]
            assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
            assert client.get("/ui/dashboard.css").headers["content-type"].startswith("text/css")
            missing = client.get("/ui/secrets.txt")
            assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_a_users_history_and_recommendations_with_reasons_are_shown(served: Served, tmp_path: Path) -> None:
    user, other = served.active_users()[0], served.active_users()[5]
    with served.client(key=True) as writer:  # live traffic of another user, for the events-per-minute chart
        views = [{"user_id": other, "item_id": item, "event_type": "view"} for item in served.items["item_id"][:3]]
        assert writer.post("/events", json={"events": views}).status_code == 200
    with served.client() as client:
        expected = recommended(client, {"user_id": user})
        history = answered(settled(client, f"/users/{quote(user)}/history", limit=20))["events"]
        model = answered(settled(client, "/model"))
        experiment = settled(client, "/experiment")
        online = settled(client, "/online")
    assert not expected["fallback"] and history
    url = f"{served.base}/{DOMAIN}/ui#user={quote(user)}"
    dom = render(url)

    assert dom.get("key-panel").attrs.get("hidden") is not None and "hidden" not in dom.get("panels").attrs
    assert_recommendations_shown(dom, expected)
    rows = dom.get("history-table").rows()
    assert [(cells(r)[1], cells(r)[2], cells(r)[3]) for r in rows] == \
        [(e["item_id"], e["title"] or "–", e["event_type"]) for e in history]
    assert user in dom.get("lookup-status").text() and expected["model"] in dom.get("recs-caption").text()
    assert f"model {model['bundle']}/{model['version']}" in dom.get("model-line").text()

    offline = {cells(r)[0]: cells(r) for r in dom.get("offline-table").rows()}
    assert set(offline) == set(model["offline"]["test"])
    popularity = model["offline"]["baselines"]["popularity"]
    for metric, value in model["offline"]["test"].items():
        assert offline[metric][1:3] == [f"{value:.3f}", f"{popularity[metric]:.3f}"]

    if experiment.status_code == 404:  # no experiment ever ran on this domain
        assert dom.by_id("no-experiment") is not None
    else:
        assert dom.get("verdict").text() == answered(experiment)["verdict"]
    if online.status_code == 404:  # a server without the online figures
        assert dom.by_id("no-online") is not None
    else:
        per_minute = answered(online)["events_per_minute"]
        assert sum(m["events"] for m in per_minute) >= len(views)  # at least the views just posted
        assert_bars_are(dom, per_minute)

    assert BROWSER is not None
    shot = tmp_path / "dashboard.png"
    run_browser(BROWSER, url, screenshot=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_a_pasted_session_history_is_answered(served: Served) -> None:
    session = served.items["item_id"].to_list()[10:13]
    with served.client() as client:
        expected = recommended(client, {"history": session})
    dom = render(f"{served.base}/{DOMAIN}/ui#history={quote(','.join(session))}")
    assert_recommendations_shown(dom, expected)
    assert [r.attrs["data-item-id"] for r in dom.get("history-table").rows()] == session[::-1]


def test_an_item_title_with_markup_shows_as_text(served: Served) -> None:
    user = served.active_users()[1]
    original = served.items.row(5, named=True)
    posted = {k: v for k, v in original.items() if k not in ("item_id", "valid_from", "created_at")}
    posted.update(item_id="markup-item", title=MARKUP_TITLE)
    with served.client(key=True) as client:
        assert client.post("/items", json={"items": [posted]}).status_code == 200
        answer = client.post("/events", json={"events": [{"user_id": user, "item_id": "markup-item",
                                                             "event_type": "view"}]})
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 10  # until the replica answering has merged it
        while answered(client.get(f"/users/{user}/history"))["events"][0]["item_id"] != "markup-item":
            assert time.monotonic() < deadline, "the posted event never reached the history"
            time.sleep(0.1)
        expected = recommended(client, {"user_id": user})
    dom = render(f"{served.base}/{DOMAIN}/ui#user={quote(user)}")

    first = dom.get("history-table").rows()[0]
    assert cells(first)[1:3] == ["markup-item", MARKUP_TITLE]
    assert_recommendations_shown(dom, expected)
    assert not list(dom.all("img")) and not list(dom.all("b")) and dom.by_id("pwned") is None
    scripts = [s.attrs.get("src", "") for s in dom.all("script")]
    assert scripts == [f"/{DOMAIN}/ui/dashboard.js"]
    assert next(dom.all("title")).text() == f"recengine · {DOMAIN}"
    assert "data-pwned" not in next(dom.all("body")).attrs


def test_a_domain_that_needs_a_read_key_shows_nothing_without_it(served: Served) -> None:
    user = served.active_users()[2]
    with served.client(LOCKED) as anonymous:
        assert anonymous.post("/recommend", json={"user_id": user}).status_code == 401
    with served.client(LOCKED, key=True) as client:
        expected = recommended(client, {"user_id": user})
    page = f"{served.base}/{LOCKED}/ui"

    refused = render(f"{page}#user={quote(user)}")
    assert "hidden" not in refused.get("key-panel").attrs and "hidden" in refused.get("panels").attrs
    assert refused.get("key-input").attrs["type"] == "password"
    assert not refused.get("recs-table").rows() and not refused.get("history-table").rows()
    shown = refused.text()  # the whole page: not one of the user's items, by id or by title
    assert not any(item["item_id"] in shown or (item["title"] and item["title"] in shown) for item in expected["items"])

    wrong = render(f"{page}#key=rk_{DOMAIN}_not-a-key&user={quote(user)}")
    assert "hidden" not in wrong.get("key-panel").attrs and "refused" in wrong.get("key-message").text()
    assert not wrong.get("recs-table").rows()

    unlocked = render(f"{page}#key={quote(served.secret)}&user={quote(user)}")
    assert "hidden" in unlocked.get("key-panel").attrs and "hidden" not in unlocked.get("panels").attrs
    assert_recommendations_shown(unlocked, expected)
    assert unlocked.get("history-table").rows()
    assert served.secret not in unlocked.get("panels").text()


# -- the experiment and online panels, from real report objects ----------------------------
def experiment_report() -> Any:
    """An A/B report as ``GET /<domain>/experiment`` answers it (figures consistent with one another)."""
    from recengine.online.schemas import ABTest, ArmMetrics, ArmSpec, ExperimentReport, ExperimentSpec, TimelinePoint

    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    timeline = []
    for minute in range(20):
        for arm, clicks in (("control", 8 + minute % 3), ("candidate", 12 + minute % 4)):
            timeline.append(TimelinePoint(minute=(start + timedelta(minutes=minute)).isoformat(), arm=arm,
                                          requests=100, clicks=clicks, ctr=clicks / 100))
    timeline.append(TimelinePoint(minute=(start + timedelta(minutes=20)).isoformat(), arm="control", requests=0,
                                  clicks=0, ctr=None))  # an empty bucket: no point drawn
    arms = [ArmMetrics(name=name, model=f"{DOMAIN}/{v}", users=150, requests=2000, impressions=20000,
                       clicks=sum(p.clicks for p in timeline if p.arm == name), conversions=30 + v,
                       ctr=ctr, ctr_low=low, ctr_high=high, conversion_rate=0.015, mrr=0.04 + v / 100, coverage=0.5)
            for name, v, ctr, low, high in (("control", 1, 0.0893, 0.0771, 0.1019),
                                            ("candidate", 2, 0.1352, 0.1213, 0.1487))]
    spec = ExperimentSpec(id="exp-<img src=x>-7", domain=DOMAIN, mode="ab", started_at=start.isoformat(),
                          arms=[ArmSpec(name="control", bundle=f"{DOMAIN}/1", weight=0.5),
                                ArmSpec(name="candidate", bundle=f"{DOMAIN}/2", weight=0.5)],
                          min_effect=0.1, planned_requests_per_arm=3000)
    ab = ABTest(control="control", candidate="candidate", difference=0.0455, relative_lift=0.508, low=0.027,
                high=0.064, z=4.8, p_value=0.0000016, significant=True, planned_requests_per_arm=3000, reached=False)
    return ExperimentReport(experiment=spec, status="running", arms=arms, ab=ab, timeline=timeline,
                            verdict="candidate leads control by +4.55 pp CTR (p < 0.001); 2,000 of 3,000 planned "
                                    "requests per arm.")


@pytest.fixture(scope="module")
def reporting(served: Served) -> Iterator[tuple[str, Any, Any]]:
    """The domain's real API in this process, with /experiment and /online answering report objects."""
    import uvicorn
    from fastapi import FastAPI

    from recengine.online.schemas import MinuteCount, OnlineSummary
    from recengine.serve.api import build_api
    from recengine.serve.service import RecommendService

    report = experiment_report()
    now = datetime.now(UTC).replace(second=0, microsecond=0)  # the last hour, as the API counts it
    summary = OnlineSummary(domain=DOMAIN, window_hours=1.0, models=report.arms, experiment=report,
                            events_per_minute=[MinuteCount(minute=(now - timedelta(minutes=m)).isoformat(),
                                                           events=(m * 37) % 90) for m in range(60) if m % 7])
    service = RecommendService(DOMAIN, {"bundle": str(served.bundle), "snapshot": str(served.snapshot)})
    app = FastAPI()
    app.get("/experiment")(lambda: report)
    app.get("/online")(lambda: summary)
    app.mount("/", build_api(DOMAIN, lambda: service))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the in-process server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", report, summary
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_experiment_and_events_per_minute_are_drawn(reporting: tuple[str, Any, Any]) -> None:
    base, report, summary = reporting
    dom = render(f"{base}/ui")

    assert dom.get("verdict").text() == report.verdict
    assert "exp-<img src=x>-7" in dom.get("experiment").text() and not list(dom.all("img"))
    arms = {r.attrs["data-arm"]: cells(r) for r in dom.get("experiment-arms").rows()}
    for arm in report.arms:
        row = arms[arm.name]
        assert row[:2] == [arm.name, arm.model] and row[6] == f"{100 * arm.ctr:.1f}%"
        assert row[7] == f"{100 * arm.ctr_low:.1f}% – {100 * arm.ctr_high:.1f}%"
    assert "p < 0.0001" in dom.get("ab-test").text() and "not reached yet" in dom.get("ab-test").text()

    chart = dom.get("experiment-chart")
    lines = {p.attrs["data-arm"]: p.attrs["d"] for p in chart.all("path")}
    assert set(lines) == {"control", "candidate"}
    drawn = [p for p in report.timeline if p.ctr is not None]
    assert all(lines[arm].count("L") == sum(p.arm == arm for p in drawn) - 1 for arm in lines)
    assert len(list(chart.all("circle"))) == len(drawn)
    legend = " ".join(t.text() for t in chart.all("text"))
    for arm in ("control", "candidate"):  # the legend's last cumulative CTR: clicked requests over requests
        points = [p for p in drawn if p.arm == arm]
        cumulative = sum(p.ctr * p.requests for p in points) / sum(p.requests for p in points)
        assert f"{arm} {100 * cumulative:.1f}%" in legend

    assert_bars_are(dom, [m.model_dump() for m in summary.events_per_minute])  # every 7th minute: none
    bars = list(dom.get("events-bars").all("rect"))
    tallest = max(bars, key=lambda b: int(b.attrs["data-events"]))
    assert float(tallest.attrs["height"]) == max(float(b.attrs["height"]) for b in bars)
    assert min(float(b.attrs["height"]) for b in bars) == 0
    total = sum(m.events for m in summary.events_per_minute)
    assert f"{total:,} events in the last" in dom.get("events-caption").text()
    assert [r.attrs["data-arm"] for r in dom.get("online-models-table").rows()] == ["control", "candidate"]
