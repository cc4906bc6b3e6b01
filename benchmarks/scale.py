"""Every stage a user runs, at a million users, a million items and ten million events, on one machine.

Run ``python benchmarks/scale.py`` (1M users, 1M items, 10M events; data under ``--work``,
default ``/tmp/scale/run``) or ``--quick`` (2,000 users, 1,000 items, 50,000 events, to check it
works); ``--users/--items/--events`` set other sizes. Each stage runs as a user would run it, a
CLI subprocess timed by wall clock, its peak RSS read from the child's own ``ru_maxrss``
(``os.wait4``):

1. ``recengine data generate --domain ecommerce`` (the generator streams events to Parquet in
   blocks of users);
2. ``recengine store ingest`` into a fresh ecommerce store;
3. ``recengine store publish`` (the snapshot serving reads);
4. ``recengine train --config dense.toml``: dense user and item towers + dot, ``pairs`` mode,
   sampled softmax with shared negatives, one epoch;
5. ``recengine train --config sequential.toml``: transformer + dot, ``sequence`` mode, sampled
   softmax with shared negatives, one epoch;
   both validate and test on seeded samples of ``--train-eval-users`` users (``train.valid_users``,
   ``train.test_users``; 2,000 by default: each ranks the whole catalogue, five rankings per run);
   the per-event cost is the epoch's training seconds over the split's training events;
6. ``recengine evaluate ecommerce --sample-users N`` (``--eval-users``, 10,000; full ranking of
   the 1M items for a seeded sample of N test users, with GAUC and the beyond-accuracy metrics);
7. a Serve replica's load in a fresh process (``RecommendService.configure``: bundle, snapshot,
   every user's vector, the IVF index calibrated to its recall target) and ``--requests``
   in-process recommends for random known users, one at a time (p50/p99);
8. ``recengine serve`` on a local port: the time until ``/ecommerce/health`` answers 200, then
   the same requests as ``POST /ecommerce/recommend`` one at a time over HTTP (p50/p99); peak
   RSS is the whole process tree's (the CLI, Ray's processes and the replica), polled.

Targets: every stage within 24 GiB (the peak stated); the sequential epoch within 3x of the
dense one per event; in-process p99 <= 10 ms at 1M items. Results go to
``benchmarks/results/scale.json`` (``--out``) and are printed as a rich table. A stage that
fails is recorded with its error and the stages that need it are skipped, never faked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "scale.json"
BIN = Path(sys.executable).parent
GIB = 1 << 30
MEMORY_TARGET_GIB = 24.0
RATIO_TARGET = 3.0
P99_TARGET_MS = 10.0
DOMAIN = "ecommerce"
FULL = {"users": 1_000_000, "items": 1_000_000, "events": 10_000_000, "eval_users": 10_000, "train_eval_users": 2_000,
        "requests": 1_000}
QUICK = {"users": 2_000, "items": 1_000, "events": 50_000, "eval_users": 500, "train_eval_users": 300,
         "requests": 200}
RANKERS = [{"name": "popularity-fallback"}, {"name": "exclude-seen", "params": {"event_types": ["purchase"]}},
           {"name": "diversity", "params": {"field": "category", "max_per_value": 3}}]


# -- processes ------------------------------------------------------------------------------
def _kib_rss(pid: int) -> int:
    """Resident KiB of one process now (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


class TreeMemory:
    """Polls the summed RSS of a process tree in a thread; ``peak_gib`` is the largest sum seen."""

    def __init__(self, root: int, every_s: float = 0.5) -> None:
        self.root, self.every_s, self.peak_kib = root, every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, sum(_kib_rss(pid) for pid in _descendants(self.root)))
            self._stop.wait(self.every_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kib / (1 << 20)


def run_stage(name: str, argv: list[str], log_dir: Path, timeout_s: float, events: int | None = None) -> dict[str, Any]:
    """Run one CLI stage to completion: wall seconds, the child's own peak RSS, its stdout kept in a file."""
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    load_before = list(os.getloadavg())
    started = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    record: dict[str, Any] = {"stage": name, "command": " ".join(_short(a) for a in argv), "ok": proc.returncode == 0,
                              "wall_s": round(wall, 2), "peak_rss_gib": round(usage.ru_maxrss / (1 << 20), 3),
                              "load_average_before": load_before, "load_average_after": list(os.getloadavg())}
    if events is not None:
        record["events_per_s"] = round(events / wall, 1)
    if proc.returncode != 0:
        reason = f"killed at the stage timeout ({timeout_s:.0f} s)" if timed_out.is_set() else (
            f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}")
        record["error"] = f"{reason}: {err_path.read_text()[-2000:].strip()}"
    return record


def _short(arg: str) -> str:
    """A command argument as the JSON shows it: the bare program name for this venv's tools."""
    return Path(arg).name if arg.startswith(str(BIN)) else arg


# -- configs --------------------------------------------------------------------------------
def pipeline_config(kind: str, args: argparse.Namespace, sizes: dict[str, int]) -> dict[str, Any]:
    """The dense or the sequential pipeline (``sequential-buckets``: its batches grouped by window length),
    one epoch, sampled shared negatives, sampled validation and test."""
    train = {"protocol": "seq", "epochs": 1, "objective": "softmax", "negatives": args.negatives,
             "sampling": "shared", "valid_users": sizes["train_eval_users"], "test_users": sizes["train_eval_users"],
             "threads": args.threads, "device": "cpu", "seed": 0}
    item = {"name": "dense", "params": {"use_features": True}}
    if kind == "dense":
        model = {"dim": args.dim, "max_history": args.history, "item_encoder": item, "interactor": {"name": "dot"},
                 "user_encoder": {"name": "dense", "params": {"use_features": True}}}
        train |= {"mode": "pairs", "batch_size": args.dense_batch}
        name = DOMAIN  # the bundle `recengine serve` serves
    else:
        model = {"dim": args.dim, "max_history": args.history, "item_encoder": item, "interactor": {"name": "dot"},
                 "user_encoder": {"name": "transformer", "params": {"layers": 2, "heads": 2, "dropout": 0.2}}}
        train |= {"mode": "sequence", "batch_size": args.sequence_batch}
        name = f"{DOMAIN}-{kind}"
        if kind == "sequential-buckets":
            train["length_buckets"] = args.length_buckets
    return {"name": name, "domain": DOMAIN, "model": model, "train": train, "ranking": {"rankers": RANKERS}}


def write_toml(config: dict[str, Any], path: Path) -> Path:
    """The pipeline config as TOML (JSON values are valid TOML inline values for these types)."""
    lines = [f"name = {json.dumps(config['name'])}", f"domain = {json.dumps(config['domain'])}"]
    for section in ("model", "train", "ranking"):
        lines.append(f"\n[{section}]")
        for key, value in config[section].items():
            lines.append(f"{key} = {_toml(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def training_summary(stage: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """The epoch's seconds and per-event cost, from `recengine train --json` and the bundle's manifest."""
    metrics = json.loads((log_dir / f"{stage['stage']}.out").read_text())
    manifest = json.loads((Path(metrics["bundle"]) / "manifest.json").read_text())
    events = int(manifest["split"]["train_events"])
    epoch = metrics["history"][0]
    return {"bundle": metrics["bundle"], "mode": metrics["training_mode"], "train_events": events,
            "epoch_s": round(epoch["seconds"], 2), "s_per_million_events": round(epoch["seconds"] / events * 1e6, 3),
            "samples_per_s": round(epoch["samples_per_second"], 1),
            "valid_ndcg@10": metrics["valid"]["ndcg@10"], "test_ndcg@10": metrics["test"]["ndcg@10"],
            "popularity_test_ndcg@10": metrics["popularity"]["ndcg@10"], "test_users": metrics["test_users"],
            "all_test_users": metrics.get("all_test_users"),
            "validation_and_test_s": round(stage["wall_s"] - epoch["seconds"], 1)}


# -- serving --------------------------------------------------------------------------------
def request_users(data_dir: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` known user ids drawn at random (with replacement), the same for both serving paths."""
    import pyarrow.parquet as pq

    ids = pq.read_table(data_dir / "users.parquet", columns=["user_id"])["user_id"].to_pylist()
    rng = np.random.default_rng(seed)
    return [ids[i] for i in rng.integers(0, len(ids), n)]


def latency(samples_ms: list[float]) -> dict[str, float]:
    values = np.asarray(samples_ms)
    return {"p50_ms": round(float(np.percentile(values, 50)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3),
            "mean_ms": round(float(values.mean()), 3), "max_ms": round(float(values.max()), 3)}


def replica_worker(bundle: str, snapshot: str, users_file: str, out_file: str) -> None:
    """Child process: load a replica's service as Serve does, then answer the requests one at a time."""
    from recengine.serve.schemas import RecommendRequest
    from recengine.serve.service import RecommendService, ServeConfig

    users = json.loads(Path(users_file).read_text())
    started = time.perf_counter()
    service = RecommendService(DOMAIN, ServeConfig(bundle=bundle, snapshot=snapshot))
    load_s = time.perf_counter() - started
    retrieval = service.recommender.retrieval_info()
    for user in users[:20]:  # warm-up
        service.recommend_many([RecommendRequest(user_id=user, k=10)])
    samples, errors = [], 0
    for user in users:
        begin = time.perf_counter_ns()
        (answer,) = service.recommend_many([RecommendRequest(user_id=user, k=10)])
        samples.append((time.perf_counter_ns() - begin) / 1e6)
        errors += isinstance(answer, Exception)
    Path(out_file).write_text(json.dumps({"load_s": round(load_s, 2), "requests": len(users), "errors": errors,
                                          "retrieval": retrieval, **latency(samples)}, default=str))


def http_stage(project: Path, users: list[str], port: int, log_dir: Path, timeout_s: float) -> dict[str, Any]:
    """`recengine serve` on a local port: time to a healthy replica, then the requests one at a time."""
    import httpx

    argv = [str(BIN / "recengine"), "serve", "--project", str(project), "--domains", DOMAIN, "--port", str(port),
            "--no-access-log"]
    record: dict[str, Any] = {"stage": "serve over HTTP", "command": " ".join(_short(a) for a in argv)}
    started = time.perf_counter()
    with open(log_dir / "serve.out", "w") as out, open(log_dir / "serve.err", "w") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True)
    memory = TreeMemory(proc.pid)
    base = f"http://127.0.0.1:{port}/{DOMAIN}"
    try:
        with httpx.Client(timeout=30.0) as client:
            ready = _wait_healthy(client, base, proc, started + timeout_s)
            record["ready_s"] = round(time.perf_counter() - started, 1)
            if not ready:
                record |= {"ok": False, "error": f"no healthy replica: {(log_dir / 'serve.err').read_text()[-1500:]}"}
                return record
            for user in users[:20]:
                client.post(f"{base}/recommend", json={"user_id": user, "k": 10})
            samples, statuses = [], {}
            for user in users:
                begin = time.perf_counter_ns()
                response = client.post(f"{base}/recommend", json={"user_id": user, "k": 10})
                samples.append((time.perf_counter_ns() - begin) / 1e6)
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
        record |= {"ok": statuses.keys() == {"200"}, "requests": len(users), "statuses": statuses, **latency(samples)}
        return record
    finally:
        _stop_server(proc)
        record["wall_s"] = round(time.perf_counter() - started, 1)
        record["peak_rss_gib"] = round(memory.stop(), 3)


def _wait_healthy(client: Any, base: str, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    import httpx

    while time.perf_counter() < deadline and proc.poll() is None:
        try:
            if client.get(f"{base}/health").status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    return False


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the CLI's clean stop: Serve and Ray shut down), then kill what is left of its session."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait()


# -- the run --------------------------------------------------------------------------------
def _machine() -> dict[str, Any]:
    import duckdb
    import polars
    import torch

    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "memory_gib": round(pages / GIB, 1),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "duckdb": duckdb.__version__, "polars": polars.__version__,
            "torch_default_threads": torch.get_num_threads()}


def _git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def _skipped(name: str, why: str) -> dict[str, Any]:
    return {"stage": name, "ok": False, "skipped": True, "error": why}


#: The training pipelines by kind (``pipeline_config``) and their stages' names.
TRAININGS = {"dense": "train dense", "sequential": "train sequential",
             "sequential-buckets": "train sequential, length buckets"}
#: The stages in order, by the name ``--stages`` takes and the name the results file shows.
STAGES = {"generate": "generate", "ingest": "ingest", "publish": "publish",
          **{f"train-{kind}": name for kind, name in TRAININGS.items()},
          "evaluate": "evaluate", "replica": "replica in-process", "http": "serve over HTTP"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = dict(QUICK if args.quick else FULL)
    sizes |= {k: v for k, v in (("users", args.users), ("items", args.items), ("events", args.events),
                                ("eval_users", args.eval_users), ("train_eval_users", args.train_eval_users),
                                ("requests", args.requests)) if v is not None}
    work = Path(args.work or ("/tmp/scale/quick" if args.quick else "/tmp/scale/run"))
    paths = {"base": work / DOMAIN, "data": work / DOMAIN / "data", "store": work / DOMAIN / "recengine.duckdb",
             "models": work / DOMAIN / "models", "logs": work / "logs"}
    for key in ("base", "logs"):
        paths[key].mkdir(parents=True, exist_ok=True)
    cli = str(BIN / "recengine")
    previous = _previous(args, sizes)
    earlier = {s["stage"]: s for s in previous.get("stages", [])}
    selected = {STAGES[name] for name in args.stages}
    load_before = list(os.getloadavg())
    started = time.perf_counter()
    run_started = datetime.now(UTC).isoformat(timespec="seconds")
    earlier_run = previous.get("run_started") or previous.get("created")
    stages: list[dict[str, Any]] = []
    events = sizes["events"]
    training: dict[str, Any] = {}
    serving: dict[str, Any] = {}

    def stage(name: str, argv: list[str], counted: int | None = None) -> bool:
        """Run ``name`` when selected, else keep its record from the earlier run (``--merge``)."""
        if name not in selected:
            record = dict(earlier[name]) if name in earlier else _skipped(name, "not run (see --stages)")
            if name in earlier:
                record.setdefault("run", earlier_run)
        else:
            record = run_stage(name, argv, paths["logs"], args.stage_timeout, counted) | {"run": run_started}
            _progress(record)
        stages.append(record)
        return bool(record.get("ok"))

    if "ingest" in selected:  # a fresh store
        for stale in (paths["store"], paths["store"].with_name("recengine.duckdb.wal")):
            stale.unlink(missing_ok=True)
    ok = stage("generate", [cli, "data", "generate", "--domain", DOMAIN, "--users", str(sizes["users"]), "--items",
                            str(sizes["items"]), "--events", str(events), "--seed", "0", "--out", str(paths["data"])],
               events)
    if ok and "ingest" in selected:
        ok = subprocess.run([cli, "store", "init", "--store", str(paths["store"]), "--domain", DOMAIN],
                            capture_output=True).returncode == 0
    ok = ok and stage("ingest", [cli, "store", "ingest", "--store", str(paths["store"]), str(paths["data"])], events)
    published = ok and stage("publish", [cli, "store", "publish", "--store", str(paths["store"])], events)
    for kind, name in TRAININGS.items():
        if not published:
            stages.append(_skipped(name, "no published store"))
            continue
        toml = write_toml(pipeline_config(kind, args, sizes), work / f"{kind}.toml")
        if stage(name, [cli, "train", "--store", str(paths["store"]), "--models", str(paths["models"]), "--config",
                        str(toml), "--json"], events):
            rerun = name in selected
            found = training_summary(stages[-1], paths["logs"]) if rerun else previous["training"].get(kind)
            if found:
                training[kind] = found
    if "dense" not in training:
        stages += [_skipped(name, "no dense bundle") for name in ("evaluate", "replica in-process", "serve over HTTP")]
        return _reused(assemble(args, sizes, stages, training, serving, load_before, time.perf_counter() - started),
                       run_started, selected, previous)
    stage("evaluate", [cli, "evaluate", DOMAIN, "--store", str(paths["store"]), "--models", str(paths["models"]),
                       "--sample-users", str(sizes["eval_users"]), "--json"])
    users = request_users(paths["data"], sizes["requests"])
    users_file = paths["logs"] / "request_users.json"
    users_file.write_text(json.dumps(users))
    snapshot = paths["store"].with_name("recengine.snapshots")
    replica_out = paths["logs"] / "replica.json"
    if stage("replica in-process", [sys.executable, str(Path(__file__).resolve()), "--replica-worker",
                                    training["dense"]["bundle"], str(snapshot), str(users_file), str(replica_out)]):
        if "replica in-process" in selected:
            stages[-1]["detail"] = json.loads(replica_out.read_text())
        serving["in_process"] = stages[-1]["detail"]
    if "serve over HTTP" in selected:
        record = http_stage(work, users, args.port, paths["logs"], args.stage_timeout) | {"run": run_started}
        _progress(record)
    elif "serve over HTTP" in earlier:
        record = dict(earlier["serve over HTTP"])
        record.setdefault("run", earlier_run)
    else:
        record = _skipped("serve over HTTP", "not run (see --stages)")
    stages.append(record)
    if record.get("ok"):
        serving["http"] = {k: v for k, v in record.items() if k not in ("stage", "command", "ok", "run")}
    return _reused(assemble(args, sizes, stages, training, serving, load_before, time.perf_counter() - started),
                   run_started, selected, previous)


def _reused(result: dict[str, Any], started: str, selected: set[str], previous: dict[str, Any]) -> dict[str, Any]:
    """Stamp the run's start and name the stages whose records an earlier run measured (``--merge``)."""
    result["run_started"] = started
    kept = {s["stage"]: s.get("run") for s in result["stages"] if s["stage"] not in selected and not s.get("skipped")}
    if kept:
        result["reused_stages"] = kept
    return result


def _previous(args: argparse.Namespace, sizes: dict[str, int]) -> dict[str, Any]:
    """The results file a ``--merge`` run keeps the unselected stages of (same sizes only)."""
    path = Path(args.out)
    if not args.merge or not path.exists():
        return {}
    previous = json.loads(path.read_text())
    kept = {k: previous.get("config", {}).get(k) for k in sizes}
    if kept != sizes:
        raise SystemExit(f"--merge: {path} was run at other sizes ({kept}), not {sizes}")
    return dict(previous)


def assemble(args: argparse.Namespace, sizes: dict[str, int], stages: list[dict[str, Any]],
             training: dict[str, Any], serving: dict[str, Any], load_before: list[float],
             total_s: float) -> dict[str, Any]:
    """The results file: sizes, stages, training and serving figures, and each target's verdict."""
    peaks = [s["peak_rss_gib"] for s in stages if "peak_rss_gib" in s]
    all_ran = all(s.get("ok") for s in stages)
    ratio = bucketed = None
    if "dense" in training and "sequential" in training:
        ratio = training["sequential"]["s_per_million_events"] / training["dense"]["s_per_million_events"]
    if "dense" in training and "sequential-buckets" in training:
        bucketed = training["sequential-buckets"]["s_per_million_events"] / training["dense"]["s_per_million_events"]
    p99 = serving.get("in_process", {}).get("p99_ms")
    targets = {
        "memory_gib_max": MEMORY_TARGET_GIB, "peak_rss_gib": max(peaks) if peaks else None,
        "memory_met": bool(peaks) and all_ran and max(peaks) <= MEMORY_TARGET_GIB,
        "sequential_per_event_ratio_max": RATIO_TARGET,
        "sequential_per_event_ratio": None if ratio is None else round(ratio, 3),
        "ratio_met": None if ratio is None else ratio <= RATIO_TARGET,
        "bucketed_per_event_ratio": None if bucketed is None else round(bucketed, 3),
        "bucketed_ratio_met": None if bucketed is None else bucketed <= RATIO_TARGET,
        "in_process_p99_ms_max": P99_TARGET_MS, "in_process_p99_ms": p99,
        "p99_met": None if p99 is None else p99 <= P99_TARGET_MS,
    }
    return {
        "benchmark": "scale", "created": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
        "git_commit": _git_commit(), "machine": _machine(),
        "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
        "config": {"domain": DOMAIN, **sizes, "torch_threads": args.threads, "dim": args.dim,
                   "max_history": args.history,
                   "negatives": args.negatives, "sampling": "shared", "dense_batch": args.dense_batch,
                   "sequence_batch": args.sequence_batch, "length_buckets": args.length_buckets, "epochs": 1},
        "stages": stages, "training": training, "serving": serving, "targets": targets,
        "all_stages_ok": all_ran, "total_seconds": round(total_s, 1),
    }


def _progress(record: dict[str, Any]) -> None:
    state = "ok" if record.get("ok") else f"FAILED ({record.get('error', '')[:300]})"
    print(f"[scale] {record['stage']}: {record.get('wall_s', '?')} s, peak {record.get('peak_rss_gib', '?')} GiB, "
          f"{state}", flush=True)


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = result["config"]
    table = Table(title=f"recengine at {c['users']:,} users, {c['items']:,} items, {c['events']:,} events")
    for column in ("stage", "wall s", "peak RSS GiB", "events/s", "status"):
        table.add_column(column, justify="left" if column in ("stage", "status") else "right")
    for s in result["stages"]:
        table.add_row(s["stage"], f"{s['wall_s']:.1f}" if "wall_s" in s else "—",
                      f"{s['peak_rss_gib']:.2f}" if "peak_rss_gib" in s else "—",
                      f"{s['events_per_s']:,.0f}" if "events_per_s" in s else "—",
                      "ok" if s.get("ok") else ("skipped" if s.get("skipped") else "failed"))
    console = Console()
    console.print(table)
    t = result["targets"]
    verdict = {True: "met", False: "missed", None: "not measured"}
    console.print(f"peak RSS {t['peak_rss_gib']} GiB (target <= {t['memory_gib_max']}): {verdict[t['memory_met']]}")
    console.print(f"sequential / dense seconds per event {t['sequential_per_event_ratio']} (target <= "
                  f"{t['sequential_per_event_ratio_max']}): {verdict[t['ratio_met']]}")
    if t.get("bucketed_per_event_ratio") is not None:
        console.print(f"  with length buckets {t['bucketed_per_event_ratio']}: {verdict[t['bucketed_ratio_met']]}")
    console.print(f"in-process p99 {t['in_process_p99_ms']} ms (target <= {t['in_process_p99_ms_max']}): "
                  f"{verdict[t['p99_met']]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script works")
    parser.add_argument("--users", type=int)
    parser.add_argument("--items", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--eval-users", type=int, help="`recengine evaluate --sample-users` (default 10,000)")
    parser.add_argument("--train-eval-users", type=int,
                        help="train.valid_users and train.test_users of both pipelines (default 2,000)")
    parser.add_argument("--requests", type=int, help="recommends per serving path (default 1,000)")
    parser.add_argument("--work", help="where the data, store and bundles go (default /tmp/scale/run)")
    parser.add_argument("--out", default=str(RESULTS), help="results JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of training (train.threads)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--history", type=int, default=20, help="model.max_history (the windows of sequence mode)")
    parser.add_argument("--negatives", type=int, default=256, help="shared sampled negatives per step")
    parser.add_argument("--dense-batch", type=int, default=1024, help="events per step of the dense pipeline")
    parser.add_argument("--sequence-batch", type=int, default=128, help="sequence windows per step")
    parser.add_argument("--length-buckets", type=int, default=50,
                        help="train.length_buckets of the bucketed sequential run (batches per length-sorted pool)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--stage-timeout", type=float, default=1800.0, help="seconds before a stage is killed")
    parser.add_argument("--stages", default=",".join(STAGES), type=lambda text: text.split(","),
                        help=f"comma list of stages to run (default all: {','.join(STAGES)})")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other stages' records from --out (a re-run of failed stages)")
    parser.add_argument("--replica-worker", nargs=4, metavar=("BUNDLE", "SNAPSHOT", "USERS", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replica_worker:
        replica_worker(*args.replica_worker)
        return 0
    for name in ("users", "items", "events", "eval_users", "train_eval_users", "requests", "history"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    unknown = [name for name in args.stages if name not in STAGES]
    if unknown:
        parser.error(f"--stages: unknown {', '.join(unknown)}; choose among {', '.join(STAGES)}")
    result = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    print(f"wrote {args.out}")
    return 0 if result["all_stages_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
