"""A replica's link to its domain's writer: write batches through it, follow its log.

:class:`LiveLog` is the small interface serving needs (``append``, ``changes_since``);
:class:`RayLog` reaches the writer actor (``recengine serve``), :class:`LocalLog` a
:class:`~recengine.live_writer.StoreWriter` in the same process (tests, embedded use).
A log such as Kafka would be a third implementation.

:class:`Follower` is the replica's thread that long-polls the log and merges what it returns
into the service (:meth:`RecommendService.apply_changes`): the bound from acknowledgement to
visible is one poll round trip plus the merge (measured in ``benchmarks/live_events.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from recengine.errors import EngineError
from recengine.feature_store.live_log import LiveAck, LiveBatch
from recengine.live_writer import Changes, StoreWriter

if TYPE_CHECKING:
    from recengine.serve.service import RecommendService

logger = logging.getLogger("recengine.serve")

POLL_WAIT_S = 1.0  # a follower's long poll: answered at once when a batch commits
RETRY_S = 0.5  # pause after the writer could not be reached (it is restarting)


class WriterUnavailable(EngineError):
    """The writer is not reachable (restarting after a crash, or not started): 503, retry."""


class LiveLog(Protocol):
    async def append(self, batch: LiveBatch) -> LiveAck | Exception:
        """Write ``batch``; its ack once durable, or the error that refused it."""

    def changes_since(self, seq: int, limit: int = 256, wait_s: float = 0.0) -> Changes:
        """Committed batches after ``seq`` (blocking up to ``wait_s`` for one)."""

    def log_impressions(self, rows: list[dict[str, Any]]) -> int:
        """Store impression rows durably (a replica's buffered flush)."""

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One of the writer's operations (experiments, reports: ``WriterActor.call``)."""


class LocalLog:
    """A :class:`StoreWriter` of this process."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    async def append(self, batch: LiveBatch) -> LiveAck | Exception:
        import asyncio

        return await asyncio.wrap_future(self.writer.submit(batch))

    def changes_since(self, seq: int, limit: int = 256, wait_s: float = 0.0) -> Changes:
        return self.writer.changes_since(seq, limit, wait_s)

    def log_impressions(self, rows: list[dict[str, Any]]) -> int:
        return self.writer.log_impressions(rows)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.writer, method)(*args, **kwargs)


class RayLog:
    """The named writer actor of a store (found again after it restarts)."""

    def __init__(self, store_path: str) -> None:
        self.store_path = store_path
        self._handle: Any = None

    def _writer(self) -> Any:
        if self._handle is None:
            from recengine.live_writer import find_writer

            self._handle = find_writer(self.store_path)
            if self._handle is None:
                raise WriterUnavailable(f"no writer is running for {self.store_path}")
        return self._handle

    async def append(self, batch: LiveBatch) -> LiveAck | Exception:
        from ray.exceptions import RayActorError

        try:
            return await self._writer().append.remote(batch)
        except RayActorError as exc:  # died with the batch in flight: not acknowledged, retry
            raise WriterUnavailable(f"the writer restarted while writing; nothing was acknowledged, "
                                    f"retry it (its event ids make a retry safe): {type(exc).__name__}") from None

    def changes_since(self, seq: int, limit: int = 256, wait_s: float = 0.0) -> Changes:
        import ray
        from ray.exceptions import RayActorError

        try:
            return ray.get(self._writer().changes_since.remote(seq, limit, wait_s))
        except RayActorError as exc:
            raise WriterUnavailable(f"the writer is restarting: {type(exc).__name__}") from None

    def log_impressions(self, rows: list[dict[str, Any]]) -> int:
        return int(self.call("log_impressions", rows))

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import ray
        from ray.exceptions import RayActorError

        try:
            return ray.get(self._writer().call.remote(method, *args, **kwargs))
        except RayActorError as exc:
            raise WriterUnavailable(f"the writer is restarting: {type(exc).__name__}") from None


class Follower:
    """Long-polls the log and applies new batches (and newer published snapshots) to ``service``."""

    def __init__(self, service: RecommendService, log: LiveLog, wait_s: float = POLL_WAIT_S) -> None:
        self.service = service
        self.log = log
        self.wait_s = wait_s
        self.writer_seq = 0
        self.errors = 0
        self._unloadable = 0  # a published version that failed to load: not retried until a newer one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-follower", daemon=True)

    def start(self) -> Follower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.wait_s + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll(self.wait_s)
            except WriterUnavailable:
                self.errors += 1
                time.sleep(RETRY_S)
            except Exception:  # a bug must not stop following: log it, retry
                self.errors += 1
                logger.exception("following the live log failed; retrying")
                time.sleep(RETRY_S)

    def poll(self, wait_s: float = 0.0) -> int:
        """One round: fetch what came after the service's sequence number and apply it;
        returns how many batches were applied."""
        seq = self.service.live_seq()
        if seq is None:  # no model loaded yet
            time.sleep(min(wait_s, RETRY_S))
            return 0
        found = self.log.changes_since(seq, wait_s=wait_s)
        self.writer_seq = found.state.seq
        published = found.state.published_version
        if published != self._unloadable and self.service.snapshot_is_older_than(published):
            try:
                self.service.reload_snapshot()
            except Exception:  # a damaged snapshot: keep serving the one loaded, and say so once
                self._unloadable = published
                logger.exception("published snapshot v%d cannot be loaded; serving the previous one", published)
            return 0
        if found.changes:
            self.service.apply_changes(found.changes)
        self.service.follow_experiment(found.experiment)
        return len(found.changes)
