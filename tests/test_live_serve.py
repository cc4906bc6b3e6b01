"""The online loop served for real: one domain, two Ray Serve replicas, its writer actor.

One served project is shared by the module (Ray and Serve start once): posted events, items
and users reach every replica; a writer killed with SIGKILL comes back without losing or
doubling an acknowledged event; the store CLI works through the writer while serving; and
``recengine deploy`` swaps the bundle under load without a failed request.
The tests run in file order and build on one another's writes (the deploy comes last).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from recengine.api_keys import ApiKeys, keys_path
from recengine.feature_store import FeatureStore
from recengine.live_writer import WriterActor, start_writer
from recengine.pipeline import train_pipeline
from recengine.project import domain_config, prepare_domain, resolve_targets
from recengine.serve.deployment import DEFAULT_CPUS_PER_REPLICA, domain_application, http_options
from tests.conftest import free_port

pytestmark = pytest.mark.ray

DOMAIN = "ecommerce"
REPLICAS = 2
ANSWERS_PER_CHECK = 20  # requests that, spread over both replicas, must all agree
SETTLE_S = 10.0  # the longest every replica may take to show a change
RECENGINE = str(Path(sys.executable).with_name("recengine"))  # the console script of this venv


@dataclass
class Served:
    """The served project: where it is, how to reach it, and what it was trained on."""

    url: str
    port: int
    project: Path
    store: Path
    writer: Any  # the writer actor's handle
    secret: str
    first_bundle: Path  # serving at the start
    second_bundle: Path  # what the deploy test swaps to
    users: pl.DataFrame
    items: pl.DataFrame
    events: pl.DataFrame

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/{DOMAIN}", timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, ray_cluster: Any) -> Any:
    """One domain, two bundles trained, the writer actor holding its store, two replicas."""
    from ray import serve

    project = tmp_path_factory.mktemp("live-project")
    prepared = prepare_domain(project, DOMAIN, users=300, items=200, events=5_000, epochs=1, progress=False)
    paths = prepared.paths
    config = domain_config(DOMAIN).with_overrides({"train.epochs": 1, "train.seed": 7})
    # trained before the writer holds the store
    second = train_pipeline(paths["store"], config, paths["models"], progress=False).bundle_path
    _, secret = ApiKeys(keys_path(project)).create(DOMAIN)
    target = resolve_targets(project, [DOMAIN])[0]
    writer = start_writer(target.store)
    # Serve keeps the HTTP port of its first start: drop one another module left running
    serve.shutdown()
    port = free_port()
    serve.start(http_options=http_options("127.0.0.1", port))
    serve.run(domain_application(DOMAIN, prepared.trained.bundle_path.resolve(), target.snapshot,
                                 DEFAULT_CPUS_PER_REPLICA, replicas=REPLICAS, store=target.store,
                                 keys=keys_path(project)),
              name=DOMAIN, route_prefix=f"/{DOMAIN}")
    data = paths["data"]
    yield Served(f"http://127.0.0.1:{port}", port, project, target.store, writer, secret,
                 prepared.trained.bundle_path.resolve(), second.resolve(), pl.read_parquet(data / "users.parquet"),
                 pl.read_parquet(data / "items.parquet"), pl.read_parquet(data / "events.parquet"))
    serve.shutdown()  # the next module starts Serve on its own port
    ray_cluster.kill(writer, no_restart=True)


# -- helpers ---------------------------------------------------------------------------
def every_replica(client: httpx.Client, path: str, agrees: Callable[[dict[str, Any]], bool]) -> float:
    """Seconds until ANSWERS_PER_CHECK answers in a row (spread over the replicas by Serve)
    satisfy ``agrees``; fails after SETTLE_S."""
    started = time.monotonic()
    in_a_row = 0
    while in_a_row < ANSWERS_PER_CHECK:
        answer = client.get(path)
        in_a_row = in_a_row + 1 if answer.status_code == 200 and agrees(answer.json()) else 0
        assert time.monotonic() - started < SETTLE_S, f"{path} still answers {answer.text}"
    return time.monotonic() - started


def live_at_least(seq: int) -> Callable[[dict[str, Any]], bool]:
    return lambda health: (health["live_seq"] or 0) >= seq


def recommend(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/recommend", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def ids(answer: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in answer["items"]]


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``recengine <args>`` as a user runs it, beside the served project."""
    return subprocess.run([RECENGINE, *args], capture_output=True, text=True, timeout=timeout)


def active_user(served: Served) -> str:
    """A user with many stored events (the model knows them: no fallback)."""
    counts = served.events.group_by("user_id").len().sort(["len", "user_id"], descending=[True, False])
    return str(counts["user_id"][0])


# -- tests -----------------------------------------------------------------------------
def test_refused_batches_cross_the_writer_as_422s_and_leave_good_writes_unharmed(served: Served) -> None:
    """Through the real writer actor (errors travel back pickled): each refused batch is a 422
    naming its record and field, interleaved good batches are stored, nothing of the bad ones."""
    import ray

    user, item = str(served.users["user_id"][0]), str(served.items["item_id"][0])
    bad = [  # the store's refusals, and the domain's request schema's (its event types and columns)
        ({"events": [{"user_id": user, "item_id": item}, {"user_id": user, "item_id": "no-such-item"}]},
         ("invalid_records", 1, "item_id")),
        ({"events": [{"user_id": user, "item_id": item, "ts": "yesterday-ish"}]}, ("invalid_records", 0, "ts")),
        ({"events": [{"user_id": user, "item_id": item, "event_type": "explode"}]}, ("validation_error",)),
        ({"items": [{"item_id": "x-1", "colour": "red"}]}, ("validation_error",)),
    ]
    with served.client() as client:
        before = ray.get(served.writer.ping.remote())  # the writer's last sequence number
        stored = 0
        for n, (body, expected) in enumerate(bad * 3):
            path = "/items" if "items" in body else "/events"
            answer = client.post(path, headers=served.auth, json=body)
            assert answer.status_code == 422, answer.text
            error = answer.json()
            assert tuple(error.get(key) for key in ("code", "record", "field")[:len(expected)]) == expected, error
            good = client.post("/events", headers=served.auth,
                               json={"events": [{"user_id": user, "item_id": item, "event_id": f"mixed-{n}"}]})
            assert good.status_code == 200 and good.json()["accepted"] == 1, good.text
            stored += 1
    assert ray.get(served.writer.ping.remote()) == before + stored  # one batch each good write, none for the bad


def test_three_posted_events_change_the_next_recommendation_on_every_replica(served: Served) -> None:
    user = active_user(served)
    with served.client() as client:
        before = recommend(client, {"user_id": user, "k": 10})
        assert before["fallback"] is False
        bought = ids(before)[:3]
        acks = []
        for item in bought:  # purchases: what this domain's exclude-seen ranker hides
            posted = client.post("/events", headers=served.auth,
                                 json={"events": [{"user_id": user, "item_id": item, "event_type": "purchase"}]})
            assert posted.status_code == 200, posted.text
            acks.append(posted.json())
        assert all(ack["accepted"] == 1 and ack["visible"] for ack in acks)
        assert [ack["seq"] for ack in acks] == sorted({ack["seq"] for ack in acks})
        every_replica(client, "/health", live_at_least(acks[-1]["seq"]))
        after = [ids(recommend(client, {"user_id": user, "k": 10})) for _ in range(ANSWERS_PER_CHECK)]
    assert all(not set(bought) & set(answer) and answer != ids(before) for answer in after), (bought, after)


def test_posted_items_are_similar_and_recommendable_and_posted_users_get_their_segment(served: Served) -> None:
    template = served.items.row(0, named=True)
    fresh = {column: template[column] for column in ("description", "brand", "price")}
    posted_items = [{"item_id": name, **fresh, "category": "live-only-category"} for name in ("live-a", "live-b")]
    country = str(served.users["country"].value_counts(sort=True)["country"][0])
    with served.client() as client:
        items = client.post("/items", headers=served.auth, json={"items": posted_items})
        users = client.post("/users", headers=served.auth,
                            json={"users": [{"user_id": "live-new", "country": country}]})
        assert items.status_code == 200 and users.status_code == 200, (items.text, users.text)
        assert (items.json()["accepted"], users.json()["accepted"]) == (2, 1)
        every_replica(client, "/health", live_at_least(users.json()["seq"]))
        for _ in range(ANSWERS_PER_CHECK):
            similar = client.get("/similar/live-a", params={"k": 5})
            assert similar.status_code == 200 and similar.json()[0]["item_id"] == "live-b", similar.text
            filtered = recommend(client, {"user_id": active_user(served), "k": 2,
                                          "context": {"filters": {"category": ["live-only-category"]}}})
            assert sorted(ids(filtered)) == ["live-a", "live-b"]
            by_history = recommend(client, {"history": ["live-a"], "k": 5})
            assert not any("live-a" in note for note in by_history["notes"])  # a known item, not ignored
            newcomer = recommend(client, {"user_id": "live-new", "k": 5})
            assert f"popular with users like you (country: {country})" in newcomer["items"][0]["reasons"]
        stranger = recommend(client, {"user_id": "live-never-posted", "k": 5})
        assert stranger["items"][0]["reasons"] == ["popular"]


@dataclass
class Stream:
    """A client posting batches of events with ids, one after another, until stopped."""

    served: Served
    name: str
    size: int = 5
    sent: list[tuple[list[dict[str, Any]], int, dict[str, Any], float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def batch(self, number: int) -> list[dict[str, Any]]:
        items = self.served.items["item_id"]
        return [{"user_id": f"stream-{self.name}", "item_id": str(items[(number * self.size + j) % len(items)]),
                 "event_id": f"{self.name}-{number}-{j}", "ts": 1_700_000_000 + number * self.size + j}
                for j in range(self.size)]

    def run(self) -> None:
        with httpx.Client(base_url=f"{self.served.url}/{DOMAIN}", timeout=30) as client:
            number = 0
            while not self.stop.is_set():
                events = self.batch(number)
                started = time.monotonic()
                answer = client.post("/events", headers=self.served.auth, json={"events": events})
                self.sent.append((events, answer.status_code, answer.json(), time.monotonic() - started))
                number += 1

    def acked(self) -> int:
        return sum(1 for _, status, _, _ in self.sent if status == 200)


def stored_event_ids(served: Served, copy: Path) -> tuple[dict[str, int], pl.DataFrame]:
    """The client event ids in the store, and the streamed users' event rows (read from a
    copy the writer makes: it holds the store itself)."""
    import ray

    ray.get(served.writer.call.remote("copy_to", str(copy)))
    with FeatureStore(copy, read_only=True) as store:
        event_ids = dict(store.sql("SELECT event_id, seq FROM live_event_ids").iter_rows())
        rows = store.sql("SELECT user_id, item_id, ts FROM events WHERE user_id LIKE 'stream-%'")
    return event_ids, rows


def test_killed_writer_comes_back_without_losing_or_doubling_acknowledged_events(
        served: Served, tmp_path: Path) -> None:
    import ray

    if not hasattr(WriterActor, "pid"):
        pytest.skip("WriterActor has no pid() to find the process to kill")
    old_pid = ray.get(served.writer.pid.remote())
    streams = [Stream(served, f"s{n}") for n in range(3)]
    threads = [threading.Thread(target=stream.run) for stream in streams]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while sum(s.acked() for s in streams) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(old_pid, signal.SIGKILL)
        new_pid = old_pid
        while new_pid == old_pid and time.monotonic() < deadline + 60:
            try:
                new_pid = ray.get(served.writer.pid.remote(), timeout=10)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                time.sleep(0.2)
        back = sum(s.acked() for s in streams)
        while sum(s.acked() for s in streams) < back + 30 and time.monotonic() < deadline + 90:
            time.sleep(0.05)  # acknowledged again after the restart
    finally:
        for stream in streams:
            stream.stop.set()
        for thread in threads:
            thread.join()
    sent = [entry for stream in streams for entry in stream.sent]
    statuses = Counter(status for _, status, _, _ in sent)
    assert new_pid != old_pid, "Ray did not restart the writer"
    assert set(statuses) <= {200, 503} and statuses[503] >= 1, statuses
    assert all(body["code"] == "writer_unavailable" for _, status, body, _ in sent if status == 503)
    assert max(elapsed for *_, elapsed in sent) < 5.0  # answered, never hung
    acked = [events for events, status, _, _ in sent if status == 200]
    failed = [events for events, status, _, _ in sent if status != 200]

    stored, rows = stored_event_ids(served, tmp_path / "after-kill.duckdb")
    acked_ids = [event["event_id"] for events in acked for event in events]
    assert set(acked_ids) <= set(stored)
    assert rows.height == rows.unique().height  # no event written twice
    with served.client() as client:
        for events in failed:  # a retry with the same ids: stored once, whatever the first try did
            retried = client.post("/events", headers=served.auth, json={"events": events})
            assert retried.status_code == 200, retried.text
            assert retried.json()["accepted"] + retried.json()["duplicates"] == len(events)
    stored, rows = stored_event_ids(served, tmp_path / "after-retry.duckdb")
    every_id = {event["event_id"] for events in acked + failed for event in events}
    assert every_id <= set(stored)
    streamed = [event_id for event_id in stored if event_id.startswith(("s0-", "s1-", "s2-"))]
    assert len(streamed) == len(every_id) and rows.height == rows.unique().height == len(every_id)


def test_store_cli_works_through_the_writer_while_serving(served: Served, tmp_path: Path) -> None:
    user, items = active_user(served), served.items["item_id"].to_list()
    csv = tmp_path / "events.csv"
    csv.write_text("user_id,item_id,event_type,ts\n" + "".join(
        f"{user},{item},view,2024-06-0{day}T00:00:00\n" for day, item in enumerate(items[:3], start=1)))
    with served.client() as client:
        posted = client.post("/events", headers=served.auth, json={"events": [{"user_id": user, "item_id": items[5]}]})
        assert posted.status_code == 200, posted.text
        every_replica(client, "/health", live_at_least(posted.json()["seq"]))
        before = client.get("/health").json()
        assert before["live_batches"] >= 1

        ingest = cli("store", "ingest", str(csv), "--store", str(served.store), "--json")
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        assert [r["rows_added"] for r in json.loads(ingest.stdout)] == [3]
        stats = cli("store", "stats", "--store", str(served.store), "--json")
        assert stats.returncode == 0, stats.stdout + stats.stderr
        live = json.loads(stats.stdout)["live"]
        assert live["writer"] == "running" and live["batches_since_publish"] >= 1
        assert live["seq"] >= posted.json()["seq"]
        publish = cli("store", "publish", "--store", str(served.store), "--json")
        assert publish.returncode == 0, publish.stdout + publish.stderr
        version = json.loads(publish.stdout)["version"]
        assert version == before["snapshot_version"] + 1
        every_replica(client, "/health", lambda h: h["snapshot_version"] == version and h["live_batches"] == 0)
    assert not any("locked" in run.stdout + run.stderr for run in (ingest, stats, publish))


def test_deploy_from_the_cli_swaps_the_bundle_under_load_without_a_failed_request(served: Served) -> None:
    import ray

    from recengine.serve_state import ServeState, clear_state, write_state

    write_state(served.project, ServeState(
        project=str(served.project), host="127.0.0.1", port=served.port, cpus_per_replica=DEFAULT_CPUS_PER_REPLICA,
        replicas=REPLICAS, access_log=False, address=ray.get_runtime_context().gcs_address))
    user, item = active_user(served), str(served.items["item_id"][0])
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with served.client() as client:
            while not stop.is_set():
                statuses.append(client.post("/recommend", json={"user_id": user, "k": 10}).status_code)
                statuses.append(client.get(f"/similar/{item}").status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        with served.client() as client:
            assert client.get("/model").json()["version"] == int(served.first_bundle.name)
            deploy = cli("deploy", "--project", str(served.project), "--domain", DOMAIN,
                         "--bundle", f"{DOMAIN}/{served.second_bundle.name}")
            assert deploy.returncode == 0, deploy.stdout + deploy.stderr
            every_replica(client, "/model", lambda m: m["version"] == int(served.second_bundle.name))
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        clear_state(served.project)
    assert len(statuses) > 40 and set(statuses) == {200}, Counter(statuses)


def test_an_experiment_reaches_every_replica_keeps_each_user_on_one_arm_and_promotes_under_load(
        served: Served) -> None:
    """Started from the CLI (through the writer), followed by both replicas; each user's
    answers, spread over the replicas, come from one arm; the report counts what was sent;
    ``stop --promote`` under load swaps every replica to the winner without a failed request.
    Runs after the deploy test: the second bundle serves, the first is the candidate."""
    project = str(served.project)
    with served.client() as client:
        missing = client.get("/experiment")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"  # across the writer actor
        started = cli("experiment", "start", "--project", project, "--domain", DOMAIN, "--json",
                      "--arm", f"control={served.second_bundle}", "--arm", f"candidate={served.first_bundle}")
        assert started.returncode == 0, started.stderr
        spec = json.loads(started.stdout)
        every_replica(client, "/health", lambda health: health["experiment"] == spec["id"])
        users = [str(u) for u in served.users["user_id"][:24]]
        arms: dict[str, set[str]] = {}
        clicks = 0
        for _ in range(4):
            for user in users:
                body = recommend(client, {"user_id": user, "k": 5})
                assert body["experiment"] == spec["id"]
                arms.setdefault(user, set()).add(body["arm"])
                if body["arm"] == "candidate" and body["items"]:
                    event = {"user_id": user, "item_id": body["items"][0]["item_id"], "request_id": body["request_id"]}
                    assert client.post("/events", json={"events": [event]}, headers=served.auth).status_code == 200
                    clicks += 1
        assert all(len(seen) == 1 for seen in arms.values()) and len({a for s in arms.values() for a in s}) == 2
        time.sleep(1.0)  # both replicas' impression buffers flush
        report = client.get("/experiment").json()
        assert sum(arm["requests"] for arm in report["arms"]) == 4 * len(users)
        assert {arm["name"]: arm["clicks"] for arm in report["arms"]} == {"control": 0, "candidate": clicks}

        statuses: list[int] = []
        stop = threading.Event()

        def load() -> None:
            with served.client() as loader:
                while not stop.is_set():
                    statuses.append(loader.post("/recommend", json={"user_id": users[0], "k": 10}).status_code)

        threads = [threading.Thread(target=load) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            stopped = cli("experiment", "stop", "--project", project, "--domain", DOMAIN, "--promote", "candidate")
            assert stopped.returncode == 0, stopped.stderr
            every_replica(client, "/model", lambda m: m["version"] == int(served.first_bundle.name))
            every_replica(client, "/health", lambda health: health["experiment"] is None)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert len(statuses) > 20 and set(statuses) == {200}, Counter(statuses)
