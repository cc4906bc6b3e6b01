"""A screenshot of a domain's dashboard (``GET /<domain>/ui``) in headless Chromium, for the README.

    python -m benchmarks.dashboard_screenshot              # serve a small ecommerce domain, shoot it
    python -m benchmarks.dashboard_screenshot --url URL    # shoot a dashboard served elsewhere

The default run serves the ecommerce domain as ``recengine serve`` does (Ray with two CPUs,
the store's writer actor, one replica taking writes), posts a few live view events over HTTP
for the most active user, and shoots ``/ecommerce/ui#user=<that user>`` into ``--out``
(default ``benchmarks/results/dashboard.png``). With ``--url`` it only shoots, e.g. a domain
running an experiment (``http://host:8000/news/ui#key=rk_...&user=u1``: the fragment never
reaches the server). Needs Debian's ``chromium`` on PATH (exits 2 saying so when it is missing).

:func:`find_browser` and :func:`run_browser` are also what ``tests/test_dashboard_browser.py``
drives the page with.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser")  # Debian's package, and the name other distributions use
WINDOW = (1280, 1600)
BUDGET_MS = 8_000  # virtual time the page gets (it is paused while a fetch is pending)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "dashboard.png"


def find_browser() -> str | None:
    """The headless-capable Chromium on PATH, or None."""
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def run_browser(browser: str, url: str, *, dump_dom: bool = False, screenshot: Path | None = None,
                window: tuple[int, int] = WINDOW, budget_ms: int = BUDGET_MS, timeout_s: float = 120.0) -> str:
    """Load ``url`` in a fresh headless profile, let its scripts run for ``budget_ms`` of
    virtual time, and return the rendered DOM (``dump_dom``) or write a PNG to ``screenshot``."""
    with tempfile.TemporaryDirectory(prefix="recengine-chromium-") as profile:
        args = [browser, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                f"--virtual-time-budget={budget_ms}", f"--window-size={window[0]},{window[1]}"]
        if screenshot is not None:
            args.append(f"--screenshot={screenshot}")
        if dump_dom:
            args.append("--dump-dom")
        done = subprocess.run([*args, url], capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"{browser} exited {done.returncode} on {url}:\n{done.stderr[-2000:]}")
    if screenshot is not None and not screenshot.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot to {screenshot}:\n{done.stderr[-2000:]}")
    return done.stdout


def serve_and_shoot(browser: str, out: Path, project: Path, window: tuple[int, int] = WINDOW) -> str:
    """Serve a small ecommerce domain, post live events for its most active user, shoot its
    dashboard; returns the URL shot."""
    import httpx
    import polars as pl

    from benchmarks.live_events import DOMAIN, auth, start_live_app
    from benchmarks.serve_latency import stop_apps
    from recengine.project import prepare_domain

    prepared = prepare_domain(project, DOMAIN, users=300, items=200, events=5_000, epochs=2, progress=False)
    events = pl.read_parquet(prepared.paths["data"] / "events.parquet")
    user = str(events.group_by("user_id").len().sort(["len", "user_id"], descending=[True, False])["user_id"][0])
    try:
        base, secret, _ = start_live_app(project, prepared.trained.bundle_path.resolve(),
                                         prepared.paths["snapshots"], replicas=1, num_cpus=0.5)
        with httpx.Client(base_url=f"{base}/{DOMAIN}", timeout=60) as client:
            shown = client.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]
            views = [{"user_id": user, "item_id": item["item_id"], "event_type": "view"} for item in shown[:2]]
            answer = client.post("/events", json={"events": views}, headers=auth(secret))
            answer.raise_for_status()
        url = f"{base}/{DOMAIN}/ui#user={user}"
        run_browser(browser, url, screenshot=out, window=window)
        return url
    finally:
        stop_apps()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a served dashboard to shoot (default: serve a small domain and shoot it)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the PNG to write (default {DEFAULT_OUT})")
    parser.add_argument("--window", default=f"{WINDOW[0]},{WINDOW[1]}", help="width,height of the window")
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        print(f"no browser: install Debian's chromium (apt-get install chromium); looked for {BROWSERS}")
        sys.exit(2)
    width, height = (int(v) for v in args.window.split(","))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.url:
        run_browser(browser, args.url, screenshot=args.out, window=(width, height))
        url = args.url
    else:
        with tempfile.TemporaryDirectory(prefix="dashboard_screenshot_") as project:
            url = serve_and_shoot(browser, args.out, Path(project), (width, height))
    print(f"shot {url.split('#')[0]} → {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
