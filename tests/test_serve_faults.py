"""A Serve replica killed (SIGKILL) under HTTP load: which requests fail, with which status,
how long the slowest one waited (never a hang), and when the domain is whole again.

``pytest -s`` prints the figures; each test also writes them to ``faults.json`` in its tmp dir.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from recengine.project import resolve_targets
from recengine.serve.deployment import MAX_QUEUED_REQUESTS, REQUEST_TIMEOUT_S, domain_application, http_options
from tests.conftest import free_port

DOMAIN = "ecommerce"
CLIENTS = 4  # two cores: more threads only measure the test's own contention
SLACK_S = 3.0  # a request may take the proxy's timeout plus this, never more
RECOVERY_LIMIT_S = 60.0


@dataclass
class Outcome:
    started: float  # seconds since the kill (negative: before it)
    latency_s: float
    status: int  # 0: no HTTP answer at all (connection dropped)
    content_type: str


@pytest.fixture(scope="module")
def serve_url(ray_cluster) -> Any:  # type: ignore[no-untyped-def]
    """Serve with the production HTTP options (request timeout) on a free port."""
    from ray import serve

    serve.shutdown()  # a Serve another module started has its own HTTP options
    port = free_port()
    serve.start(http_options=http_options("127.0.0.1", port))
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def replica_pids() -> list[int]:
    """The OS process ids of the domain's live replica actors."""
    import ray

    pids = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(f"SERVE_REPLICA::{DOMAIN}#"):
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            try:
                pids.append(ray.get(handle.__ray_call__.remote(lambda _replica: os.getpid()), timeout=5))
            except Exception:  # noqa: BLE001 - a replica dying or starting is simply not live
                continue
    return pids


def drive(url: str, outcomes: list[Outcome], stop: threading.Event, kill_time: list[float]) -> None:
    """POST /recommend on one keep-alive connection until ``stop``, recording each outcome."""
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S + 2 * SLACK_S) as client:
        while not stop.is_set():
            start = time.monotonic()
            try:
                reply = client.post(f"/{DOMAIN}/recommend", json={"user_id": "u0000003", "k": 10})
                status, content_type = reply.status_code, reply.headers.get("content-type", "")
            except httpx.HTTPError:
                status, content_type = 0, ""
            end = time.monotonic()
            origin = kill_time[0] if kill_time else end + 1e9
            outcomes.append(Outcome(start - origin, end - start, status, content_type.split(";")[0]))


def wait_for(url: str, path: str, deadline: float) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S + SLACK_S) as client:
        while True:
            try:
                reply = client.get(path)
                if reply.status_code == 200:
                    return reply
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{path} not 200 in time"
            time.sleep(0.1)


def burst(url: str, count: int) -> list[tuple[int, str, float]]:
    """``count`` concurrent GET /health: each one's status, content type and latency."""

    async def all_at_once() -> list[tuple[int, str, float]]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S + SLACK_S, limits=limits) as client:
            async def one() -> tuple[int, str, float]:
                start = time.monotonic()
                try:
                    reply = await client.get(f"/{DOMAIN}/health")
                    status, kind = reply.status_code, reply.headers.get("content-type", "").split(";")[0]
                except httpx.HTTPError:
                    status, kind = 0, ""
                return status, kind, time.monotonic() - start

            return list(await asyncio.gather(*(one() for _ in range(count))))

    return asyncio.run(all_at_once())


def kill_one_replica_under_load(url: str, project: Path, replicas: int) -> dict[str, Any]:
    """Serve the domain with ``replicas``, kill one under load, and measure the damage."""
    from ray import serve

    target = resolve_targets(project, [DOMAIN])[0]
    serve.run(domain_application(DOMAIN, target.bundle, target.snapshot, replicas=replicas),
              name=DOMAIN, route_prefix=f"/{DOMAIN}")
    outcomes: list[Outcome] = []
    stop, kill_time = threading.Event(), []
    threads = [threading.Thread(target=drive, args=(url, outcomes, stop, kill_time)) for _ in range(CLIENTS)]
    try:
        before = wait_for(url, f"/{DOMAIN}/model", time.monotonic() + RECOVERY_LIMIT_S).json()
        pids = replica_pids()
        assert len(pids) == replicas, pids
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        kill_time.append(time.monotonic())
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.2)  # the process is gone: /health must now be answered by a survivor or a new replica
        # more requests at once than a proxy queues: with no live replica, those over the queue get 503 at once
        flood = burst(url, MAX_QUEUED_REQUESTS + 8)
        health = wait_for(url, f"/{DOMAIN}/health", kill_time[0] + RECOVERY_LIMIT_S)
        health_back_s = time.monotonic() - kill_time[0]
        while len(live := replica_pids()) < replicas or pids[0] in live:
            assert time.monotonic() < kill_time[0] + RECOVERY_LIMIT_S, "the killed replica was not replaced"
            time.sleep(0.2)
        replaced_s = time.monotonic() - kill_time[0]
        time.sleep(1.0)  # a moment of load on the mended deployment
        stop.set()
        for thread in threads:
            thread.join()
        after = wait_for(url, f"/{DOMAIN}/model", time.monotonic() + 10).json()
    finally:
        stop.set()
        serve.delete(DOMAIN)
    failed = [o for o in outcomes if o.status != 200]
    after_kill = [o for o in outcomes if o.started >= 0]
    return {
        "replicas": replicas,
        "clients": CLIENTS,
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "requests": len(outcomes),
        "failed": len(failed),
        "failed_by_status": {f"{code} {kind}".strip(): n for (code, kind), n in
                             Counter((o.status, o.content_type) for o in failed).items()},
        "served_after_kill": sum(o.status == 200 for o in after_kill),
        "longest_request_s": round(max(o.latency_s for o in outcomes), 3),
        "longest_failed_request_s": round(max((o.latency_s for o in failed), default=0.0), 3),
        "burst_right_after_kill": {f"{code} {kind}".strip(): n for (code, kind), n in
                                   Counter((code, kind) for code, kind, _ in flood).items()},
        "burst_longest_503_s": round(max((t for code, _, t in flood if code == 503), default=0.0), 3),
        "health_200_after_s": round(health_back_s, 2),
        "health_status": health.json()["status"],
        "replica_replaced_after_s": round(replaced_s, 2),
        "bundle_before": [before["bundle"], before["version"], before["snapshot_version"]],
        "bundle_after": [after["bundle"], after["version"], after["snapshot_version"]],
    }


def report(figures: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "faults.json").write_text(json.dumps(figures, indent=2))
    print(f"\nreplica killed under load: {json.dumps(figures)}")


def assert_never_a_hang(figures: dict[str, Any]) -> None:
    assert figures["longest_request_s"] <= REQUEST_TIMEOUT_S + SLACK_S, figures
    assert figures["bundle_after"] == figures["bundle_before"], figures  # back by itself, same bundle
    assert "0" not in figures["failed_by_status"], figures  # every request got an HTTP answer
    assert {key.split()[0] for key in figures["failed_by_status"]} <= {"408", "500", "503"}, figures


@pytest.mark.ray
@pytest.mark.slow
def test_killed_single_replica_fails_fast_and_comes_back(serve_url: str, project: Path, tmp_path: Path) -> None:
    figures = kill_one_replica_under_load(serve_url, project, replicas=1)
    report(figures, tmp_path)
    assert_never_a_hang(figures)
    assert figures["health_status"] == "ok"
    # no live replica: the proxy queues MAX_QUEUED_REQUESTS (answered by the new replica or 408 at
    # the timeout) and answers the rest 503 at once
    assert figures["burst_right_after_kill"].get("503 text/plain", 0) >= 1, figures
    assert figures["burst_longest_503_s"] < 2.0, figures  # at once (136 connections on two cores)
    assert {key.split()[0] for key in figures["burst_right_after_kill"]} <= {"200", "408", "500", "503"}, figures


@pytest.mark.ray
@pytest.mark.slow
def test_with_two_replicas_the_survivor_keeps_serving(serve_url: str, project: Path, tmp_path: Path) -> None:
    figures = kill_one_replica_under_load(serve_url, project, replicas=2)
    report(figures, tmp_path)
    assert_never_a_hang(figures)
    assert figures["served_after_kill"] > 20, figures
    # the survivor answers the burst; only requests the proxy had already routed to the dead
    # replica fail (500 at once, or 408 at the timeout when its death is noticed late)
    burst_statuses = figures["burst_right_after_kill"]
    assert burst_statuses.get("200 application/json", 0) >= 0.9 * (MAX_QUEUED_REQUESTS + 8), figures
    assert {key.split()[0] for key in burst_statuses} <= {"200", "408", "500"}, figures
    # and /health is 200 again within one request timeout, not only once the replica is replaced
    assert figures["health_200_after_s"] <= REQUEST_TIMEOUT_S + SLACK_S, figures


def test_serve_config_carries_replicas_and_the_failure_limits(project: Path, tmp_path: Path) -> None:
    from recengine.cli.serve_cmd import serve

    out = tmp_path / "serve.yaml"
    result = CliRunner().invoke(serve, ["config", "--project", str(project), "--out", str(out), "--replicas", "2"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(out.read_text())
    assert config["http_options"]["request_timeout_s"] == REQUEST_TIMEOUT_S
    deployments = [d for app in config["applications"] for d in app["deployments"]]
    assert deployments and all(d["num_replicas"] == 2 for d in deployments)
    assert all(d["max_queued_requests"] == MAX_QUEUED_REQUESTS for d in deployments)


STALL_WATCH_S = 15.0  # how long the test watches whether the server drops a stalled client


def stall(url: str, request: bytes) -> socket.socket:
    """A raw connection to the proxy that sends ``request`` (an unfinished one) and stops."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=5)
    connection.sendall(request)
    return connection


def watch_closing(connections: dict[str, socket.socket], since: float, found: dict[str, Any]) -> None:
    """Record in ``found`` when (seconds after ``since``) and how the server ends each
    connection (an answer's status line, or a plain close); stop after STALL_WATCH_S."""
    waiting = dict(connections)
    while waiting and (left := since + STALL_WATCH_S - time.monotonic()) > 0:
        readable, _, _ = select.select(list(waiting.values()), [], [], left)
        for name, connection in list(waiting.items()):
            if connection in readable:
                try:
                    data = connection.recv(4096)
                except OSError as exc:
                    data = f"reset ({exc.__class__.__name__})".encode()
                found[name] = {"after_s": round(time.monotonic() - since, 2),
                               "got": data.split(b"\r\n")[0].decode(errors="replace") or "closed"}
                del waiting[name]


@pytest.mark.ray
@pytest.mark.slow
def test_stalled_clients_do_not_hold_the_replica(serve_url: str, project: Path, tmp_path: Path) -> None:
    """One client sends half its request headers, one its headers and half a 1,000-byte body;
    while both stall, 50 requests from another client are all answered 200 promptly. Whether
    (and when) the server drops the stalled connections itself is measured, not asserted."""
    from ray import serve

    target = resolve_targets(project, [DOMAIN])[0]
    serve.run(domain_application(DOMAIN, target.bundle, target.snapshot, replicas=1),
              name=DOMAIN, route_prefix=f"/{DOMAIN}")
    body = json.dumps({"user_id": "u0000003", "k": 10}).encode().ljust(1000)
    stalled: dict[str, socket.socket] = {}
    closing: dict[str, Any] = {}
    try:
        wait_for(serve_url, f"/{DOMAIN}/model", time.monotonic() + RECOVERY_LIMIT_S)
        since = time.monotonic()
        stalled["half_headers"] = stall(serve_url, f"POST /{DOMAIN}/recommend HTTP/1.1\r\nHost: x\r\nContent-".encode())
        stalled["half_body"] = stall(serve_url, (
            f"POST /{DOMAIN}/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:500])
        watcher = threading.Thread(target=watch_closing, args=(stalled, since, closing))
        watcher.start()
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        with httpx.Client(base_url=serve_url, timeout=REQUEST_TIMEOUT_S + SLACK_S) as client:
            for _ in range(50):
                start = time.monotonic()
                reply = client.post(f"/{DOMAIN}/recommend", json={"user_id": "u0000003", "k": 10})
                latencies.append(time.monotonic() - start)
                statuses[reply.status_code] += 1
        watcher.join()
    finally:
        for connection in stalled.values():
            connection.close()
        serve.delete(DOMAIN)
    figures = {"statuses": dict(statuses), "slowest_s": round(max(latencies), 3),
               "median_s": round(sorted(latencies)[len(latencies) // 2], 3),
               "stalled_closed_by_server": {name: closing.get(name, f"still open after {STALL_WATCH_S:.0f} s")
                                            for name in stalled}}
    (tmp_path / "stalled.json").write_text(json.dumps(figures, indent=2))
    print(f"\nstalled clients: {json.dumps(figures)}")
    assert statuses == {200: 50}, figures
    assert max(latencies) < 2.0, figures
