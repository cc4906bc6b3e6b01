"""Ray Serve HTTP latency of ``/ecommerce/recommend`` beside a no-op Serve deployment in the same run.

Run ``python benchmarks/serve_latency.py`` (100k-item catalogue) or ``--quick`` (10k items,
100 requests per level, to check it works). It:

1. prepares the ecommerce domain (synthetic data → store → published snapshot → one
   training epoch → bundle) in a project folder (``--project``, default a temporary one;
   ``--reuse`` keeps an already prepared one with the same sizes). Model quality does not
   matter here, the catalogue size does;
2. times in-process ``Recommender.recommend_many`` for one request and for a batch of 16
   (before Ray starts), as served (cached user vectors, IVF retrieval) and with the exact
   scan + per-request user encoder, so the HTTP figures can be split into model cost and
   serving cost;
3. starts Ray (``init_ray(num_cpus=2)``) and ``serve.start`` on a free 127.0.0.1 port, and
   deploys two applications side by side:

   - ``/ecommerce``: :func:`recengine.serve.deployment.domain_application` (batched, as shipped);
   - ``/noop``: a FastAPI ingress whose ``POST /recommend`` validates the same
     ``RecommendRequest`` body and returns a constant ``RecommendResponse`` of k items
     (same response model, so validation and JSON serialisation cost the same), with the
     same CPUs per replica and ``max_ongoing_requests`` as the ecommerce replica: the floor
     is "Serve + FastAPI + HTTP", nothing else;
4. warms both up, then for each concurrency level (``--levels``, default 1,8,32) sends
   ``POST /<app>/recommend`` with random known user ids and k=10 from that many threads,
   each with its own keep-alive ``httpx.Client``, until ``--requests`` requests are done or
   ``--seconds`` pass. Each level runs in ``--rounds`` rounds in ABBA order (no-op, ours,
   ours, no-op, …) so drift in the machine's load hits both sides alike; samples of a
   side are pooled across rounds;
5. prints p50, p99 and QPS per level for both, the ratios ours / no-op (targets,
   DESIGN §7: p50 ≤ 1.5×, p99 ≤ 2×), the count of non-2xx answers (target: no 5xx at
   32-way), the load average around each level, a Markdown table, and
   writes ``benchmarks/results/serve_latency.json``;
6. shuts Serve and Ray down.

All traffic goes to 127.0.0.1. The load generator runs in this process and competes for
the same two cores as Serve: that cost hits the no-op and ours alike, which is why the
figures that matter are the same-run ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))

RESULTS = Path(_HERE) / "results" / "serve_latency.json"
REPO = Path(_HERE).parent
DOMAIN = "ecommerce"
K = 10
TARGET_P50_RATIO = 1.5
TARGET_P99_RATIO = 2.0


# --------------------------------------------------------------------------- no-op app

def noop_deployment(num_cpus: float, max_ongoing_requests: int):  # type: ignore[no-untyped-def]
    """A Serve FastAPI ingress answering ``POST /recommend`` with a constant response."""
    from ray import serve

    # the same logging as the shipped deployment (no access log line per request), so the
    # floor measures the same Serve path, not a disk write ours does not make
    @serve.deployment(name="noop", ray_actor_options={"num_cpus": num_cpus},
                      max_ongoing_requests=max_ongoing_requests, health_check_period_s=5,
                      logging_config={"enable_access_log": False})
    @serve.ingress()
    class NoopRecommender:
        def __serve_build_asgi_app__(self):  # type: ignore[no-untyped-def]
            from fastapi import FastAPI

            from recengine.serve.schemas import RecommendedItem, RecommendRequest, RecommendResponse

            app = FastAPI(title="no-op")
            items = [RecommendedItem(item_id=f"i{n:07d}", score=1.0 - n / 100, title=f"item {n}", reasons=["noop"])
                     for n in range(1, 101)]

            async def recommend(request: RecommendRequest) -> RecommendResponse:
                return RecommendResponse(user_id=request.user_id, items=items[:request.k], fallback=False,
                                         model="noop/1", snapshot_version=1)

            # this module's ``from __future__ import annotations`` leaves string annotations that
            # FastAPI cannot resolve for names imported here (the body would become a query → 422)
            recommend.__annotations__ = {"request": RecommendRequest, "return": RecommendResponse}
            app.post("/recommend", response_model=RecommendResponse)(recommend)

            @app.get("/health")
            async def health() -> dict[str, str]:
                return {"status": "ok"}

            return app

    return NoopRecommender.bind()


# --------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def prepare(project: Path, args: argparse.Namespace) -> tuple[Path, Path, float]:
    """Bundle and snapshot of the ecommerce domain at the requested sizes (seconds spent)."""
    from recengine.project import domain_paths, prepare_domain, resolve_targets

    marker = project / DOMAIN / "serve_latency_sizes.json"
    sizes = {"users": args.users, "items": args.items, "events": args.events, "epochs": args.epochs}
    if args.reuse and marker.exists() and json.loads(marker.read_text()) == sizes:
        try:
            target = resolve_targets(project, [DOMAIN])[0]
            print(f"reusing the prepared {DOMAIN} domain in {project}")
            return target.bundle, target.snapshot, 0.0
        except LookupError:
            pass
    start = time.perf_counter()
    # The domain's own pipeline, trained cheaply: a full softmax over 100k items in sequence
    # mode is a [B·L, 100k] matrix a step (hours an epoch on 2 cores); 100 sampled negatives
    # and a time cap give a working bundle of the same shape, which is all latency needs.
    prepared = prepare_domain(project, DOMAIN, users=args.users, items=args.items, events=args.events,
                              epochs=args.epochs, progress=False,
                              overrides={"train.negatives": 100, "train.max_minutes": 3.0, "train.threads": 1})
    spent = time.perf_counter() - start
    marker.write_text(json.dumps(sizes))
    return prepared.trained.bundle_path.resolve(), domain_paths(project, DOMAIN)["snapshots"].resolve(), spent


def known_users(bundle: Path) -> list[str]:
    return json.loads((bundle / "ids.json").read_text())["users"]


def in_process(bundle: Path, snapshot: Path, users: list[str], n: int) -> dict[str, Any]:
    """``recommend_many`` timed in this process: one request, and batches of 16.

    Measured as a replica serves (user vectors cached, retrieval as the bundle configures:
    IVF at this size) and, for comparison, with the exact scan and the user encoder run per
    request (the serving path before the index and the cache).
    """
    import torch

    from recengine.recommender import Recommender, Request

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray replica (OMP_NUM_THREADS=1); 2 threads on a loaded box spin
    result: dict[str, Any] = {"torch_threads": 1}
    for label, options in (("served", {"precompute_users": True}), ("exact_uncached", {"retrieval": "exact"})):
        start = time.perf_counter()
        recommender = Recommender.load(bundle, None, snapshot, **options)
        load_s = time.perf_counter() - start
        rng = random.Random(1)
        for _ in range(20):
            recommender.recommend_many([Request(rng.choice(users), K)])
        single = []
        for _ in range(n):
            request = Request(rng.choice(users), K)
            t = time.perf_counter()
            recommender.recommend_many([request])
            single.append((time.perf_counter() - t) * 1e3)
        batch = []
        for _ in range(max(10, n // 10)):
            requests = [Request(rng.choice(users), K) for _ in range(16)]
            t = time.perf_counter()
            recommender.recommend_many(requests)
            batch.append((time.perf_counter() - t) * 1e3)
        result[label] = {
            "load_s": round(load_s, 2), "items": len(recommender.item_ids), "retrieval": recommender.retrieval_info(),
            "single_p50_ms": round(percentile(single, 50), 2), "single_p99_ms": round(percentile(single, 99), 2),
            "batch16_p50_ms": round(percentile(batch, 50), 2), "batch16_p99_ms": round(percentile(batch, 99), 2),
            "batch16_per_request_ms": round(percentile(batch, 50) / 16, 2)}
        del recommender
    torch.set_num_threads(threads)
    return result


def wait_ready(base: str, app: str, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.time() + timeout
    with httpx.Client(base_url=base, timeout=10) as client:
        while time.time() < deadline:
            try:
                if client.get(f"/{app}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise TimeoutError(f"/{app} not healthy after {timeout:.0f} s")


def start_apps(bundle: Path, snapshot: Path, users: list[str], num_cpus: float) -> tuple[str, int]:
    """Ray, Serve on a free 127.0.0.1 port, and ``/ecommerce`` and ``/noop`` deployed side by side.

    Returns once both are healthy and answer k items; gives the base URL and the replicas'
    ``max_ongoing_requests`` (the no-op gets the ecommerce replica's CPUs and limit).
    """
    import httpx
    from ray import serve

    from recengine.ray_env import init_ray
    from recengine.serve.deployment import DomainRecommender, domain_application, http_options

    # a fresh local instance even when other Ray clusters run on this machine (without
    # this, ray.init joins the newest one and refuses num_cpus)
    os.environ.setdefault("RAY_ADDRESS", "local")
    init_ray(num_cpus=2)
    port = free_port()
    # the proxy exactly as `recengine serve` starts it (its request timeout included)
    serve.start(http_options=http_options("127.0.0.1", port),
                logging_config={"enable_access_log": False, "log_level": "WARNING"})
    base = f"http://127.0.0.1:{port}"
    serve.run(domain_application(DOMAIN, bundle, snapshot, num_cpus=num_cpus), name=DOMAIN,
              route_prefix=f"/{DOMAIN}")
    max_ongoing = DomainRecommender.max_ongoing_requests
    serve.run(noop_deployment(num_cpus, max_ongoing), name="noop", route_prefix="/noop")
    wait_ready(base, DOMAIN)
    wait_ready(base, "noop")
    for app in ("noop", DOMAIN):
        check = httpx.post(f"{base}/{app}/recommend", json={"user_id": users[0], "k": K}, timeout=60)
        if check.status_code != 200 or len(check.json()["items"]) != K:
            raise RuntimeError(f"/{app}/recommend answered {check.status_code}: {check.text[:300]}")
    return base, max_ongoing


def stop_apps() -> None:
    """Serve and Ray shut down, if Ray was started."""
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def drive(base: str, app: str, users: list[str], clients: int, requests: int, seconds: float,
          seed: int) -> dict[str, Any]:
    """``clients`` threads, each with its own keep-alive client, share ``requests`` POSTs."""
    import httpx

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    remaining = [requests]
    deadline = time.perf_counter() + seconds
    go = threading.Barrier(clients + 1)

    def take() -> bool:
        with lock:
            if remaining[0] <= 0 or time.perf_counter() > deadline:
                return False
            remaining[0] -= 1
            return True

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        local_lat: list[float] = []
        local_status: Counter[int] = Counter()
        local_err: Counter[str] = Counter()
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=base, timeout=60, limits=limits) as client:
            client.get(f"/{app}/health")  # open the keep-alive connection before timing
            go.wait()
            while take():
                body = {"user_id": rng.choice(users), "k": K}
                t = time.perf_counter()
                try:
                    response = client.post(f"/{app}/recommend", json=body)
                    response.read()
                    local_status[response.status_code] += 1
                except httpx.HTTPError as exc:
                    local_err[type(exc).__name__] += 1
                    continue
                local_lat.append((time.perf_counter() - t) * 1e3)
        with lock:
            latencies.extend(local_lat)
            statuses.update(local_status)
            errors.update(local_err)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    go.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {"latencies": latencies, "statuses": dict(statuses), "errors": dict(errors), "wall_s": wall}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x for run in runs for x in run["latencies"]]
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    for run in runs:
        statuses.update(run["statuses"])
        errors.update(run["errors"])
    wall = sum(run["wall_s"] for run in runs)
    done = sum(statuses.values())
    return {"requests": done, "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
            "mean_ms": round(float(np.mean(latencies)), 2) if latencies else None,
            "max_ms": round(max(latencies), 2) if latencies else None,
            "qps": round(done / wall, 1) if wall > 0 else None,
            "non_2xx": sum(n for code, n in statuses.items() if not 200 <= code < 300),
            "5xx": sum(n for code, n in statuses.items() if code >= 500),
            "statuses": {str(code): n for code, n in sorted(statuses.items())},
            "client_errors": dict(errors), "wall_s": round(wall, 2)}


# --------------------------------------------------------------------------- main

def add_served_domain_args(parser: argparse.ArgumentParser) -> None:
    """The options that build (or reuse) the served ecommerce domain; shared with serve_load."""
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--num-cpus", type=float, default=None,
                        help="CPUs per ecommerce replica (default: the deployment's default)")
    parser.add_argument("--project", type=Path, default=None, help="project folder (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="reuse a domain already prepared in --project")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_served_domain_args(parser)
    parser.add_argument("--requests", type=int, default=500, help="requests per level and side, per round")
    parser.add_argument("--seconds", type=float, default=30.0, help="time bound per level and side, per round")
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds per level (samples pooled)")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up requests per side")
    parser.add_argument("--quick", action="store_true", help="10k items, 100 requests per level")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.items, args.users, args.events, args.requests, args.rounds = 10_000, 2_000, 40_000, 100, 1
        args.warmup = min(args.warmup, 30)
    args.levels = [int(x) for x in str(args.levels).split(",") if x.strip()]
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    temporary = args.project is None
    project = Path(tempfile.mkdtemp(prefix="serve_latency_")) if temporary else args.project
    project.mkdir(parents=True, exist_ok=True)
    load_start = loadavg()
    print(f"load average at start: {load_start} on {os.cpu_count()} cores")

    from recengine.serve.deployment import BATCH_WAIT_S, DEFAULT_CPUS_PER_REPLICA, MAX_BATCH_SIZE

    num_cpus = args.num_cpus if args.num_cpus is not None else DEFAULT_CPUS_PER_REPLICA
    try:
        bundle, snapshot, prepare_s = prepare(project, args)
        users = known_users(bundle)
        print(f"prepared {DOMAIN}: {args.items:,} items, {len(users):,} known users in {prepare_s:.0f} s")
        local = in_process(bundle, snapshot, users, 200 if not args.quick else 50)
        for label, run in local.items():
            if isinstance(run, dict):
                print(f"in-process recommend_many ({label}) at {run['items']:,} items: 1 request p50 "
                      f"{run['single_p50_ms']} ms, p99 {run['single_p99_ms']} ms; batch of 16 p50 "
                      f"{run['batch16_p50_ms']} ms ({run['batch16_per_request_ms']} ms/request); load "
                      f"{run['load_s']} s; {run['retrieval']}")

        ray_start = time.perf_counter()
        base, max_ongoing = start_apps(bundle, snapshot, users, num_cpus)
        print(f"Ray + Serve up in {time.perf_counter() - ray_start:.0f} s at {base}; "
              f"replicas num_cpus={num_cpus}, max_ongoing_requests={max_ongoing}, "
              f"batch max {MAX_BATCH_SIZE} wait {BATCH_WAIT_S * 1e3:.0f} ms")

        for app in ("noop", DOMAIN):  # warm-up: both sequential and concurrent paths
            drive(base, app, users, 1, max(10, args.warmup // 4), 30, seed=0)
            drive(base, app, users, 8, args.warmup, 30, seed=0)

        levels: list[dict[str, Any]] = []
        for clients in args.levels:
            runs: dict[str, list[dict[str, Any]]] = {"noop": [], DOMAIN: []}
            before = loadavg()
            for round_ in range(args.rounds):
                order = ("noop", DOMAIN) if round_ % 2 == 0 else (DOMAIN, "noop")
                for app in order:
                    runs[app].append(drive(base, app, users, clients, args.requests, args.seconds,
                                           seed=clients * 10 + round_))
            after = loadavg()
            noop, ours = summarise(runs["noop"]), summarise(runs[DOMAIN])
            row = {"clients": clients, "noop": noop, "ours": ours,
                   "p50_ratio": round(ours["p50_ms"] / noop["p50_ms"], 2),
                   "p99_ratio": round(ours["p99_ms"] / noop["p99_ms"], 2),
                   "loadavg_before": before, "loadavg_after": after}
            row["p50_ok"] = row["p50_ratio"] <= TARGET_P50_RATIO
            row["p99_ok"] = row["p99_ratio"] <= TARGET_P99_RATIO
            levels.append(row)
            print(f"{clients:>3} clients: no-op p50 {noop['p50_ms']:.1f} p99 {noop['p99_ms']:.1f} ms "
                  f"{noop['qps']} qps | ours p50 {ours['p50_ms']:.1f} p99 {ours['p99_ms']:.1f} ms {ours['qps']} qps "
                  f"| ratio p50 {row['p50_ratio']}× p99 {row['p99_ratio']}× | non-2xx ours {ours['non_2xx']} "
                  f"no-op {noop['non_2xx']} | load {before} → {after}")
    finally:
        stop_apps()
        if temporary:
            shutil.rmtree(project, ignore_errors=True)

    top = max(args.levels)
    top_row = next(row for row in levels if row["clients"] == top)
    targets = {
        "p50_ratio_max": TARGET_P50_RATIO, "p99_ratio_max": TARGET_P99_RATIO,
        "p50_met_all_levels": all(row["p50_ok"] for row in levels),
        "p99_met_all_levels": all(row["p99_ok"] for row in levels),
        f"zero_5xx_at_{top}": top_row["ours"]["5xx"] == 0 and not top_row["ours"]["client_errors"],
    }
    total_s = time.perf_counter() - started
    result = {
        "benchmark": "serve_latency", "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_start": load_start, "loadavg_end": loadavg()},
        "config": {"items": args.items, "users": args.users, "events": args.events, "epochs": args.epochs,
                   "requests_per_level_side_round": args.requests, "seconds_bound": args.seconds,
                   "rounds": args.rounds, "levels": args.levels, "k": K, "quick": args.quick,
                   "replica_num_cpus": num_cpus, "max_ongoing_requests": max_ongoing,
                   "max_batch_size": MAX_BATCH_SIZE, "batch_wait_timeout_s": BATCH_WAIT_S,
                   "ray_num_cpus": 2},
        "prepare_s": round(prepare_s, 1), "in_process": local, "levels": levels, "targets": targets,
        "total_s": round(total_s, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(markdown(result))
    print()
    print("targets: " + ", ".join(f"{key}={value}" for key, value in targets.items()))
    print(f"total {total_s:.0f} s; wrote {args.out}")


def markdown(result: dict[str, Any]) -> str:
    config, machine = result["config"], result["machine"]
    lines = [
        f"Serve HTTP latency, `/{DOMAIN}/recommend` (k={K}, {config['items']:,} items) vs a no-op Serve "
        f"deployment in the same run; {machine['cpus']} cores, load average {machine['loadavg_start']} at start.",
        "",
        "| clients | no-op p50 | no-op p99 | no-op QPS | ours p50 | ours p99 | ours QPS | p50 ratio (≤1.5×) "
        "| p99 ratio (≤2×) | non-2xx (5xx) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["levels"]:
        noop, ours = row["noop"], row["ours"]
        lines.append(
            f"| {row['clients']} | {noop['p50_ms']:.1f} ms | {noop['p99_ms']:.1f} ms | {noop['qps']:.0f} "
            f"| {ours['p50_ms']:.1f} ms | {ours['p99_ms']:.1f} ms | {ours['qps']:.0f} "
            f"| {row['p50_ratio']:.2f}× {'✓' if row['p50_ok'] else '✗'} "
            f"| {row['p99_ratio']:.2f}× {'✓' if row['p99_ok'] else '✗'} | {ours['non_2xx']} ({ours['5xx']}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
