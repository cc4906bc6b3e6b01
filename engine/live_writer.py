"""The one writer of a domain's store while it is served: group commit, sequence numbers, follow.

DuckDB lets one process hold a store file read-write, so a served domain has exactly one
:class:`StoreWriter`, inside a Ray actor (:class:`WriterActor`) that ``recengine serve``
starts and Ray restarts if it dies. HTTP write batches reach it from any replica; it
commits whatever batches are waiting in one transaction (group commit: one fsync for many
batches, so throughput does not hang on one fsync per event) and answers each only once
that commit is durable. Replicas follow the log with :meth:`StoreWriter.changes_since`
(a long poll: it returns as soon as something newer commits).

The actor runs at a lower OS scheduling priority (``WRITER_NICE``): on cores it shares with
the replicas, a request being answered wins over a commit, and a writer kept waiting only
commits larger groups (durability and the order of acknowledgements are unchanged).

The CLI reaches a served store through the same actor (:mod:`recengine.store_access`).
Where users outgrow one machine, this interface (``append`` / ``changes_since``) is what a
log such as Kafka would implement; nothing else knows the writer is a DuckDB file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from recengine.feature_store import FeatureStore
from recengine.feature_store.live_log import LiveAck, LiveBatch, LiveChange, LiveState
from recengine.feature_store.snapshot import DEFAULT_HISTORY
from recengine.vectors import posted_item_vectors

logger = logging.getLogger("recengine.writer")

WRITER_NAMESPACE = "recengine"
MAX_GROUP_RECORDS = 50_000  # records committed together at most (bounds one commit's time)
MAX_WAIT_S = 5.0  # the longest a follower's poll is held
RECENT_BATCHES = 4_096  # committed batches kept in memory for followers
# niceness added to the writer actor's process (Ray starts workers at 15: the writer runs at 19):
# under CPU contention the replicas' requests run first; the writer's work then waits and is
# committed in larger groups (cheaper per batch). Measured: benchmarks/live_events.py
WRITER_NICE = 10


def writer_name(store_path: str | Path) -> str:
    """The Ray actor name of the writer of the store at ``store_path`` (one per file)."""
    digest = hashlib.sha1(str(Path(store_path).resolve()).encode()).hexdigest()[:16]
    return f"recengine-writer-{digest}"


@dataclass
class Changes:
    """What a follower gets: committed batches after its sequence number, and where the log
    and the published snapshot stand (a newer ``state.published_version`` means reload)."""

    changes: list[LiveChange]
    state: LiveState
    experiment: dict[str, Any] | None = None  # the store's running (else latest) experiment


class StoreWriter:
    """Holds one store read-write; :meth:`append` queues a batch for the next group commit."""

    def __init__(self, store_path: str | Path, max_group_records: int = MAX_GROUP_RECORDS) -> None:
        self.store = FeatureStore(store_path)
        self.path = self.store.path
        self.store.set_threads(1)  # see _bulk
        self.max_group_records = max_group_records
        self._pending: list[tuple[LiveBatch, Future[LiveAck | Exception]]] = []
        self._wake = threading.Condition()  # a batch queued (the committer waits on it)
        self._committed = threading.Condition()  # a group committed (followers wait on it)
        self._state = self.store.live_state()
        self._experiment = self._latest_experiment()  # what followers compare with their own
        self._recent: deque[LiveChange] = deque(maxlen=RECENT_BATCHES)  # what followers usually ask for
        self.groups = 0
        self.last_commit_s = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._commit_loop, name="group-commit", daemon=True)
        self._thread.start()

    # -- writes ------------------------------------------------------------------------
    def submit(self, batch: LiveBatch) -> Future[LiveAck | Exception]:
        """Queue ``batch``; the future resolves (to its ack, or the error that refused it)
        once the group holding it is durable."""
        future: Future[LiveAck | Exception] = Future()
        with self._wake:
            if self._closed:
                raise RuntimeError(f"the writer of {self.path} is closed")
            self._pending.append((batch, future))
            self._wake.notify()
        return future

    def append(self, batch: LiveBatch, timeout: float | None = None) -> LiveAck | Exception:
        """Write ``batch`` and wait until it is durable."""
        return self.submit(batch).result(timeout)

    def _take_group(self) -> list[tuple[LiveBatch, Future[LiveAck | Exception]]]:
        with self._wake:
            while not self._pending and not self._closed:
                self._wake.wait()
            group: list[tuple[LiveBatch, Future[LiveAck | Exception]]] = []
            records = 0
            while self._pending and (not group or records + len(self._pending[0][0].records)
                                     <= self.max_group_records):
                item = self._pending.pop(0)
                group.append(item)
                records += len(item[0].records)
            return group

    def _commit_loop(self) -> None:
        while True:
            group = self._take_group()
            if not group:
                return  # closed and drained
            started = time.perf_counter()
            try:
                batches = [batch for batch, _ in group]
                vectorize = posted_item_vectors(self.store) if any(b.kind == "items" for b in batches) else None
                logged: list[LiveChange] = []
                answers: list[LiveAck | Exception] = self.store.append_live(batches, vectorize=vectorize,
                                                                             logged=logged)
            except Exception as exc:  # the store failed as a whole (disk full): every batch is told
                answers = [exc] * len(group)
            self.last_commit_s = time.perf_counter() - started
            self.groups += 1
            try:
                self._publish_group(logged)
            except Exception:  # never stop committing: followers then read the store itself
                logger.exception("could not cache the committed group for followers")
                self._refresh_state()
            for (_, future), answer in zip(group, answers):
                future.set_result(answer)

    def _publish_group(self, logged: list[LiveChange]) -> None:
        """Tell followers what the group committed: its log entries, as the store wrote them."""
        if not logged:
            return
        fresh = logged
        if logged[0].seq != self._state.seq + 1:  # the store took batches from elsewhere: read the gap
            fresh = self.store.changes_since(self._state.seq, limit=RECENT_BATCHES)
        state = replace(self._state, seq=max([self._state.seq, *(c.seq for c in fresh)]),
                        batches_since_publish=self._state.batches_since_publish + len(fresh),
                        records_since_publish=self._state.records_since_publish + sum(c.frame.height for c in fresh))
        with self._committed:
            self._recent.extend(fresh)
            self._state = state
            self._committed.notify_all()

    # -- following ---------------------------------------------------------------------
    def changes_since(self, seq: int, limit: int = 256, wait_s: float = 0.0) -> Changes:
        """Batches committed after ``seq`` (at most ``limit``); with ``wait_s``, wait that
        long for one when there is none yet (a long poll)."""
        deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
        with self._committed:
            while self._state.seq <= seq and time.monotonic() < deadline:
                self._committed.wait(deadline - time.monotonic())
            state = self._state
            recent = self._newer_in_memory(seq, limit)
        experiment = self._experiment
        if state.seq <= seq:
            return Changes([], state, experiment)
        if recent is not None:  # from memory: no read of the store per follower and poll
            return Changes(recent, state, experiment)
        return Changes(self.store.changes_since(seq, limit), state, experiment)

    def _newer_in_memory(self, seq: int, limit: int) -> list[LiveChange] | None:
        """The first ``limit`` cached batches after ``seq``, or None when the cache does not
        reach back to ``seq`` (the store has them). Walks from the newest end: a follower
        asks for the last few batches, so a poll costs what it gets, not the cache's size."""
        recent = self._recent
        if not recent or recent[0].seq > seq + 1:
            return None
        newer: list[LiveChange] = []
        for change in reversed(recent):
            if change.seq <= seq:
                break
            newer.append(change)
        newer.reverse()
        return newer[:limit]

    def live_state(self) -> LiveState:
        return self._state

    def _latest_experiment(self) -> dict[str, Any] | None:
        row = self.store.sql("SELECT domain FROM experiments ORDER BY started_at DESC LIMIT 1")
        return self.store.experiment(row["domain"][0]) if row.height else None

    def pending(self) -> int:
        """Batches queued and not yet committed (the writer's lag)."""
        with self._wake:
            return len(self._pending)

    # -- what the CLI does through the writer ----------------------------------------
    def ingest_paths(self, paths: list[str], kind: str | None = None, **options: Any) -> list[dict[str, Any]]:
        with self._bulk():
            return [r.to_dict() for r in self.store.ingest_paths(paths, kind, **options)]

    def publish(self, root: str | None = None, version: int | None = None,
                history: int | None = None) -> dict[str, Any]:
        with self._bulk():
            info = self.store.publish(root, version, history or DEFAULT_HISTORY)
        self._refresh_state()
        return info.to_dict()

    def export_snapshot(self, root: str | None = None, history: int | None = None) -> dict[str, Any]:
        with self._bulk():
            return self.store.export_snapshot(root, history or DEFAULT_HISTORY).to_dict()

    def copy_to(self, target: str) -> str:
        """A consistent copy of the whole store at ``target`` (for readers while serving)."""
        with self._bulk():
            return str(self.store.copy_to(target))

    @contextmanager
    def _bulk(self) -> Iterator[None]:
        """Every core for a bulk job (a publish, a file ingest); one otherwise: a group commit
        is small, and extra DuckDB threads would only take cores from the replicas."""
        self.store.set_threads(os.cpu_count() or 1)
        try:
            yield
        finally:
            self.store.set_threads(1)

    def stats(self) -> dict[str, Any]:
        return {**self.store.stats(), "live": self.live_stats()}

    # -- impressions and experiments ---------------------------------------------------
    def log_impressions(self, rows: Any) -> int:
        """Store what replicas showed (their buffered impressions), durably."""
        return self.store.log_impressions(rows)

    def record_experiment(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Start an experiment (refused while another runs on the domain); followers load its arms."""
        from recengine.online.control import record_experiment

        recorded = record_experiment(self.store, spec)
        self._experiment = recorded
        return recorded

    def stop_experiment(self, domain: str, winner: str | None = None) -> dict[str, Any]:
        """Stop the domain's running experiment (``winner``: the arm promoted); returns it as recorded."""
        from recengine.online.control import stop_experiment

        stopped = stop_experiment(self.store, domain, winner)
        self._experiment = stopped
        return stopped

    def experiment(self, domain: str | None = None) -> dict[str, Any] | None:
        """The store's running (else latest) experiment, as followers see it."""
        if domain is not None:
            return self.store.experiment(domain)
        return self._experiment

    def experiment_report(self, domain: str, experiment_id: str | None = None, k: int = 10,
                          window_hours: float | None = None) -> dict[str, Any]:
        from recengine.online.store_reports import experiment_status

        return experiment_status(self.store, domain, experiment_id, k, window_hours).model_dump()

    def online_figures(self, domain: str, hours: float = 24.0, k: int = 10,
                       window_hours: float | None = None) -> dict[str, Any]:
        from recengine.online.store_reports import online_figures

        return online_figures(self.store, domain, hours, k, window_hours).model_dump()

    def live_stats(self) -> dict[str, Any]:
        state = self._state
        return {"seq": state.seq, "published_seq": state.published_seq,
                "batches_since_publish": state.batches_since_publish,
                "records_since_publish": state.records_since_publish,
                "pending_batches": self.pending(), "last_commit_ms": round(self.last_commit_s * 1000, 2),
                "writer": "running"}

    def _refresh_state(self) -> None:
        state = self.store.live_state()
        with self._committed:
            self._recent.clear()  # a publish may forget old entries: followers read the store past it
            self._state = state
            self._committed.notify_all()

    def close(self) -> None:
        """Commit what is queued, then release the store."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join()
        self.store.close()


class WriterActor:
    """:class:`StoreWriter` as a Ray actor (threaded: calls wait on futures and conditions,
    never on each other). Built with :func:`start_writer`."""

    def __init__(self, store_path: str) -> None:
        lower_priority(WRITER_NICE)
        self.writer = StoreWriter(store_path)

    def append(self, batch: LiveBatch) -> LiveAck | Exception:
        return self.writer.append(batch)

    def changes_since(self, seq: int, limit: int = 256, wait_s: float = 0.0) -> Changes:
        return self.writer.changes_since(seq, limit, wait_s)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One of the CLI's operations (``ingest_paths``, ``publish``, ``stats``, ...)."""
        if method not in CLI_METHODS:
            raise ValueError(f"the writer has no operation {method!r}; it has {sorted(CLI_METHODS)}")
        return getattr(self.writer, method)(*args, **kwargs)

    def ping(self) -> int:
        return self.writer.live_state().seq

    def pid(self) -> int:
        """The actor's process id (operators and fault tests kill it to see Ray restart it)."""
        return os.getpid()


def lower_priority(increment: int) -> None:
    """Add ``increment`` to this process's niceness (the writer actor's own process only);
    where the OS refuses, the writer runs at normal priority and says so."""
    try:
        os.nice(increment)
    except OSError as exc:
        logger.warning("could not lower the writer's scheduling priority: %s", exc)


CLI_METHODS = frozenset({"ingest_paths", "publish", "export_snapshot", "copy_to", "stats", "live_stats",
                         "record_experiment", "stop_experiment", "experiment", "experiment_report",
                         "online_figures", "log_impressions"})


def start_writer(store_path: str | Path) -> Any:
    """Start (or find) the named writer actor of a store; Ray restarts it if it dies, and
    it then reopens the store, whose committed batches DuckDB's WAL kept."""
    import ray

    actor = ray.remote(WriterActor).options(
        name=writer_name(store_path), namespace=WRITER_NAMESPACE, get_if_exists=True,
        num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=256,
        runtime_env={"env_vars": {"POLARS_MAX_THREADS": "1"}},  # small batches: no thread pool to wake
    )
    handle = actor.remote(str(Path(store_path).resolve()))
    ray.get(handle.ping.remote())  # type: ignore[attr-defined]  # an actor handle; opened the store, or raised
    locator = writer_locator(store_path)
    temp = locator.with_name(locator.name + ".tmp")
    temp.write_text(json.dumps({"address": ray.get_runtime_context().gcs_address, "name": writer_name(store_path),
                                "namespace": WRITER_NAMESPACE}))
    os.replace(temp, locator)
    return handle


def writer_locator(store_path: str | Path) -> Path:
    """``<store>.writer.json``: the Ray cluster whose actor writes the store (for the CLI;
    stale once serving stops, which the CLI notices: the store is then not locked)."""
    path = Path(store_path)
    return path.with_name(path.name + ".writer.json")


def writer_address(store_path: str | Path) -> str | None:
    """The Ray address :func:`start_writer` recorded for the store, if any."""
    try:
        return str(json.loads(writer_locator(store_path).read_text())["address"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_writer(store_path: str | Path) -> Any | None:
    """The running writer actor of a store, or None (Ray must be initialised)."""
    import ray

    try:
        return ray.get_actor(writer_name(store_path), namespace=WRITER_NAMESPACE)
    except ValueError:
        return None
