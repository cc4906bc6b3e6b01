"""The online loop end to end (issue 16): experiments on simulated users who know what they like.

Run ``python -m benchmarks.online_ab`` from the repository root (``--quick``: a smaller
domain and fewer requests, a smoke run).

1. The ecommerce domain is generated (``--users``/``--items``/``--events``); the generator
   knows each user's true taste over categories and each product's appeal inside its
   category (``SyntheticData.truth``), which no model sees. Two bundles are trained on the
   store: the domain's model (``ecommerce``) and a popularity baseline (``popularity``: the
   same pipeline whose ranker answers every request with the most popular products).
2. ``recengine serve`` serves the domain (a subprocess, real HTTP), and for each run
   ``recengine experiment start`` starts an experiment through the CLI.
3. A click simulator drives the HTTP API: a random user asks ``/recommend`` for 10 items,
   looks down the list with position bias (position p is examined with probability
   1 / (p + 1) ** EXAMINATION_DECAY), clicks an examined product with a probability that grows
   with the user's true taste for its category and the product's appeal, and posts each click
   as a ``view`` event (half with the answer's ``request_id``, half without: those are
   attributed by the latest impression within the window); 15% of clicks are followed by a
   ``purchase`` of the product (the domain's conversion).
4. ``recengine experiment status --json`` gives the verdict from the logged data alone.

Runs: A/A, the trained model against itself — must not be significant; team-draft
interleaving of popularity and the trained model — its sign test over users should find the
trained model; A/B popularity (control) vs the trained model (candidate) — the trained arm
must win with p < 0.01, and ``experiment stop --promote candidate`` runs while requests keep
coming (none may fail). The dashboard is then shot (``benchmarks/results/dashboard.png``,
when Chromium is installed) showing the A/B experiment.
Then the false-positive rate of the A/B test over ``--reruns`` A/A re-randomisations of the
A/A run's logged requests (users re-split by a fresh hash each time, the same delta-method
test): it should be near the nominal 5%.

``--json PATH`` writes the figures (default ``benchmarks/results/online_ab.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # ``benchmarks`` importable when run as a file

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.serve_latency import free_port, loadavg, wait_ready  # noqa: E402

DOMAIN = "ecommerce"
EXAMINATION_DECAY = 0.7  # position bias: P(examine position p) = 1 / (p + 1) ** 0.7
BASE_CLICK = 0.01  # click probability of an examined product of average taste and appeal
MAX_CLICK = 0.5
PURCHASE_AFTER_CLICK = 0.15  # a click is followed by a purchase of the product this often
ADMIN_KEY = "online-ab-benchmark"
RESULTS = Path(__file__).resolve().parent / "results" / "online_ab.json"
console = Console(width=150)


class Simulator:
    """Users whose clicks follow the generator's truth, with position bias."""

    def __init__(self, truth: dict[str, Any], user_ids: list[str], item_ids: list[str], seed: int) -> None:
        taste = np.asarray(truth["user_category_taste"], dtype=np.float64)
        self.share = taste * taste.shape[1]  # 1.0: a category liked as much as an average one
        self.category = np.asarray(truth["item_category"], dtype=np.int64)
        appeal = np.asarray(truth["item_appeal"], dtype=np.float64)
        self.appeal = appeal / appeal.mean()
        self.users = user_ids
        self.item_index = {item: i for i, item in enumerate(item_ids)}
        self.rng = np.random.default_rng(seed)

    def clicks(self, user: int, shown: list[str]) -> list[int]:
        """Positions clicked in one answer."""
        clicked = []
        for position, item in enumerate(shown):
            index = self.item_index.get(item)
            if index is None or self.rng.random() > 1.0 / (position + 1) ** EXAMINATION_DECAY:
                continue
            appeal = self.share[user, self.category[index]] * min(self.appeal[index], 4.0) ** 0.5
            if self.rng.random() < min(MAX_CLICK, BASE_CLICK * appeal):
                clicked.append(position)
        return clicked


async def drive(base: str, secret: str, simulator: Simulator, requests: int, concurrency: int,
                experiment: str | None) -> dict[str, Any]:
    """``requests`` recommendations for random users, and their clicks posted as events."""
    import httpx

    counters = {"requests": 0, "clicks": 0, "purchases": 0, "errors": 0, "other_experiment": 0,
                "with_request_id": 0}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for _ in range(requests):
        queue.put_nowait(int(simulator.rng.integers(len(simulator.users))))
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def session() -> None:
            while not queue.empty():
                user = queue.get_nowait()
                answer = await client.post(f"/{DOMAIN}/recommend", json={"user_id": simulator.users[user], "k": 10})
                if answer.status_code != 200:
                    counters["errors"] += 1
                    continue
                body = answer.json()
                counters["requests"] += 1
                if body.get("experiment") != experiment:
                    counters["other_experiment"] += 1
                shown = [item["item_id"] for item in body["items"]]
                events = []
                for position in simulator.clicks(user, shown):
                    event: dict[str, Any] = {"user_id": simulator.users[user], "item_id": shown[position],
                                             "event_type": "view"}
                    if simulator.rng.random() < 0.5:
                        event["request_id"] = body["request_id"]
                        counters["with_request_id"] += 1
                    events.append(event)
                    if simulator.rng.random() < PURCHASE_AFTER_CLICK:  # a conversion, attributed by time
                        events.append({**event, "event_type": "purchase"})
                        counters["purchases"] += 1
                if events:
                    posted = await client.post(f"/{DOMAIN}/events", json={"events": events}, headers=headers)
                    if posted.status_code != 200:
                        counters["errors"] += 1
                    counters["clicks"] += sum(e["event_type"] == "view" for e in events)

        started = time.perf_counter()
        await asyncio.gather(*(session() for _ in range(concurrency)))
        counters["seconds"] = round(time.perf_counter() - started, 1)
    return counters


def recengine(*args: str, env: dict[str, str] | None = None) -> str:
    command = [str(Path(sys.executable).with_name("recengine")), *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def prepare(project: Path, users: int, items: int, events: int, epochs: int, seed: int) -> dict[str, Any]:
    """The domain's store and two bundles: the trained model and the popularity baseline."""
    from recengine.pipeline import train_pipeline
    from recengine.plugin_manager import get_plugin_manager
    from recengine.project import domain_config, domain_paths, prepare_domain

    started = time.perf_counter()
    prepare_domain(project, DOMAIN, users=users, items=items, events=events, epochs=epochs, seed=seed,
                   progress=False)
    paths = domain_paths(project, DOMAIN)
    popularity = domain_config(DOMAIN).with_overrides({
        "name": "popularity", "train.epochs": 1, "train.seed": seed,
        "ranking.rankers": [{"name": "popularity-fallback", "params": {"everyone": True}},
                            {"name": "exclude-seen", "params": {"event_types": ["purchase"]}}]})
    train_pipeline(paths["store"], popularity, paths["models"], progress=False)
    data = get_plugin_manager().domain(DOMAIN).generate(users, items, events, seed)  # the same draw: its truth
    return {"truth": data.truth, "users": data.users["user_id"].to_list(), "items": data.items["item_id"].to_list(),
            "prepare_s": round(time.perf_counter() - started, 1)}


def start_serving(project: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RECENGINE_ADMIN_KEY": ADMIN_KEY, "RAY_ADDRESS": "local"}
    server = subprocess.Popen([str(Path(sys.executable).with_name("recengine")), "serve", "--project", str(project),
                               "--domains", DOMAIN, "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_ready(f"http://127.0.0.1:{port}", DOMAIN, timeout=300)
    return server


def wait_followed(base: str, experiment: str, timeout: float = 60.0) -> None:
    """Until the replicas answer under ``experiment`` (they follow the store within a poll)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{base}/{DOMAIN}/health", timeout=30).json().get("experiment") == experiment:
            return
        time.sleep(0.3)
    raise RuntimeError(f"the replicas did not start serving experiment {experiment} within {timeout} s")


def run_experiment(project: Path, base: str, secret: str, simulator: Simulator, label: str, arms: list[str],
                   mode: str, requests: int, concurrency: int, promote: str | None = None) -> dict[str, Any]:
    started = json.loads(recengine("experiment", "start", "--project", str(project), "--domain", DOMAIN,
                                   *[part for arm in arms for part in ("--arm", arm)], "--mode", mode, "--json"))
    wait_followed(base, started["id"])
    traffic = asyncio.run(drive(base, secret, simulator, requests, concurrency, started["id"]))
    time.sleep(1.0)  # the replicas' impression buffers flush (every 0.25 s)
    report = json.loads(recengine("experiment", "status", "--project", str(project), "--domain", DOMAIN, "--json"))
    promotion = stop_under_load(project, base, secret, simulator, promote, concurrency)
    console.print(f"[bold]{label}[/]: {report['verdict']}  ({traffic['requests']} requests, {traffic['clicks']} "
                  f"clicks in {traffic['seconds']} s)")
    return {"label": label, "mode": mode, "arms": arms, "traffic": traffic, "report": report, "stop": promotion}


def stop_under_load(project: Path, base: str, secret: str, simulator: Simulator, promote: str | None,
                    concurrency: int) -> dict[str, Any]:
    """``experiment stop`` (``--promote``) while requests keep coming: none may fail."""
    import threading

    outcome: dict[str, Any] = {}

    def traffic() -> None:
        outcome.update(asyncio.run(drive(base, secret, simulator, 600, concurrency, None)))

    burst = threading.Thread(target=traffic)
    burst.start()
    time.sleep(1.0)
    recengine("experiment", "stop", "--project", str(project), "--domain", DOMAIN,
              *(["--promote", promote] if promote else []))
    burst.join()
    return {"promote": promote, "requests_during": outcome.get("requests"), "failed_during": outcome.get("errors")}


def shoot_dashboard(base: str, user: str) -> str | None:
    """The domain's dashboard after the runs (the A/B experiment's CTR over time, a user's
    recommendations) into benchmarks/results/dashboard.png, when Chromium is installed."""
    from benchmarks.dashboard_screenshot import DEFAULT_OUT, find_browser, run_browser

    browser = find_browser()
    if browser is None:
        console.print("no chromium on PATH: dashboard screenshot skipped")
        return None
    run_browser(browser, f"{base}/{DOMAIN}/ui#user={user}", screenshot=DEFAULT_OUT)
    return str(DEFAULT_OUT)


def rerandomised_aa(store: Path, experiment: str, reruns: int, seed: int) -> dict[str, Any]:
    """A/B tests over random re-splits of one A/A run's users: how often they find a difference."""
    from recengine.feature_store import FeatureStore
    from recengine.online import stats
    from recengine.online.attribution import outcomes
    from recengine.online.experiments import unit_hash
    from recengine.online.store_reports import event_kinds

    with FeatureStore(store, read_only=True) as opened:
        spec = opened.experiment(DOMAIN, experiment)
        assert spec is not None
        kinds = event_kinds(DOMAIN, opened)
        start = datetime.fromisoformat(spec["started_at"]).astimezone(UTC).replace(tzinfo=None)
        found = outcomes(opened.cursor(), kinds.clicks, kinds.conversions, start, None, experiment)
    import polars as pl

    per_user = found.requests.group_by("user_id").agg(pl.col("clicked").sum().alias("s"), pl.len().alias("n"))
    users, clicked, requested = per_user["user_id"].to_list(), per_user["s"].to_numpy(), per_user["n"].to_numpy()
    rejected = 0
    for rerun in range(reruns):
        side = np.array([unit_hash(f"aa-{seed}-{rerun}", user) < 0.5 for user in users])
        test = stats.difference(stats.ratio(clicked[side], requested[side]),
                                stats.ratio(clicked[~side], requested[~side]))
        rejected += int(test.p_value is not None and test.p_value < 0.05)
    return {"reruns": reruns, "rejected": rejected, "false_positive_rate": round(rejected / reruns, 4),
            "users": len(users), "requests": int(requested.sum())}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--requests", type=int, default=3_000, help="Recommendation requests per run.")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--reruns", type=int, default=400, help="A/A re-randomisations for the false-positive rate.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project", type=Path, default=Path("/tmp/recengine-online-ab"))
    parser.add_argument("--quick", action="store_true", help="1,000 users, 600 items, 1,000 requests per run.")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.users, args.items, args.events, args.epochs, args.requests, args.reruns = 1_000, 600, 20_000, 3, 1_000, 200
    return args


def main() -> None:
    import shutil

    from recengine.api_keys import ApiKeys
    from recengine.project import domain_paths

    args = parse_args()
    shutil.rmtree(args.project, ignore_errors=True)
    load_start = loadavg()
    prepared = prepare(args.project, args.users, args.items, args.events, args.epochs, args.seed)
    console.print(f"prepared {DOMAIN} and two bundles in {prepared['prepare_s']} s")
    _, secret = ApiKeys.of_project(args.project).create(DOMAIN, name="online_ab benchmark")
    simulator = Simulator(prepared["truth"], prepared["users"], prepared["items"], args.seed)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_serving(args.project, port)
    runs = []
    try:
        plan = [("A/A: trained vs trained", ["control=ecommerce/1", "candidate=ecommerce/1"], "ab", None),
                ("interleaving: popularity vs trained", ["control=popularity/1", "candidate=ecommerce/1"],
                 "interleave", None),
                ("A/B: popularity vs trained", ["control=popularity/1", "candidate=ecommerce/1"], "ab", "candidate")]
        for label, arms, mode, promote in plan:
            runs.append(run_experiment(args.project, base, secret, simulator, label, arms, mode, args.requests,
                                       args.concurrency, promote))
        screenshot = shoot_dashboard(base, prepared["users"][0])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=120)
    aa = rerandomised_aa(domain_paths(args.project, DOMAIN)["store"], runs[0]["report"]["experiment"]["id"],
                         args.reruns, args.seed)
    result = {"benchmark": "online_ab", "created_at": datetime.now(UTC).isoformat(),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_start": load_start,
                          "loadavg_end": loadavg()},
              "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "simulator": {"examination_decay": EXAMINATION_DECAY, "base_click": BASE_CLICK, "max_click": MAX_CLICK,
                            "purchase_after_click": PURCHASE_AFTER_CLICK},
              "prepare_s": prepared["prepare_s"], "runs": runs, "aa_rerandomised": aa, "targets": targets(runs, aa),
              "dashboard_screenshot": screenshot}
    console.print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    console.print(f"figures written to {args.json}")
    if not all(v for k, v in result["targets"].items() if k.endswith("_met")):
        sys.exit(1)


def targets(runs: list[dict[str, Any]], aa: dict[str, Any]) -> dict[str, Any]:
    same, interleaved, ab = (run["report"] for run in runs)
    ab_test = ab["ab"]
    return {
        "ab_trained_wins_met": bool(ab_test["p_value"] is not None and ab_test["p_value"] < 0.01
                                    and ab_test["difference"] > 0),
        "aa_not_significant_met": not same["ab"]["significant"],
        "interleaving_trained_preferred": bool(interleaved["interleaving"]["significant"]
                                               and interleaved["interleaving"]["credit"] > 0),
        "aa_false_positive_rate": aa["false_positive_rate"],
        "aa_false_positive_rate_near_5pct_met": 0.02 <= aa["false_positive_rate"] <= 0.09,
        "promote_under_load_zero_failed_met": runs[2]["stop"]["failed_during"] == 0,
    }


def table(result: dict[str, Any]) -> Table:
    out = Table(title="Online experiments on simulated users (ecommerce)")
    for column in ("run", "arm", "model", "users", "requests", "clicks", "CTR@10 (95%)", "MRR", "coverage", "p"):
        out.add_column(column, justify="left" if column in ("run", "arm", "model") else "right")
    for run in result["runs"]:
        report = run["report"]
        p = report["ab"]["p_value"] if report.get("ab") else report["interleaving"]["p_value"]
        for index, arm in enumerate(report["arms"]):
            interval = "" if arm["ctr_low"] is None else f" ({arm['ctr_low']:.3f}–{arm['ctr_high']:.3f})"
            out.add_row(run["label"] if index == 0 else "", arm["name"], str(arm["model"]), str(arm["users"]),
                        str(arm["requests"]), str(arm["clicks"]),
                        ("—" if arm["ctr"] is None else f"{arm['ctr']:.4f}") + interval,
                        "—" if arm["mrr"] is None else f"{arm['mrr']:.4f}",
                        "—" if arm["coverage"] is None else f"{arm['coverage']:.3f}",
                        "" if index else ("—" if p is None else f"{p:.2g}"))
    return out


if __name__ == "__main__":
    main()
