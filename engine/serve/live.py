"""A replica's link to its domain's writer: write batches through it, follow its log.

:class:`LiveLog` is the small interface serving needs (``append``, ``changes_since``);
:class:`RayLog` reaches the writer actor (``recengine serve``), :class:`LocalLog` a
:class:`~recengine.live_writer.StoreWriter` in the same process (tests, embedded use).
A log such as Kafka would be a third implementation.

:class:`Follower` is the replica's thread that long-polls the log and merges what it returns
into the service (:meth:`RecommendService.apply_changes`): the bound from acknowledgement to
visible is one poll round trip plus the merge (measured in ``benchmarks/live_events.py``).
It then wakes the writes waiting for that merge (:class:`AppliedSignal`), so a write waits
for its batch without polling on the event loop the replica's reads share.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from recengine.errors import EngineError
from recengine.feature_store.live_log import LiveAck, LiveBatch
from recengine.live_writer import Changes, StoreWriter

if TYPE_CHECKING:
    from recengine.serve.service import RecommendService

logger = logging.getLogger("recengine.serve")

POLL_WAIT_S = 1.0  # a follower's long poll: answered at once when a batch commits
RETRY_S = 0.5  # pause after the writer could not be reached (it is restarting)
RECHECK_S = 0.05  # a waiting write looks again this often (a merge that did not signal: a swap)


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


class AppliedSignal:
    """Wakes the coroutines waiting until the service has merged a sequence number
    (:meth:`wait`) when the follower thread merges it (:meth:`notify`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def wait(self, seq: int, applied: Callable[[], int], timeout_s: float) -> bool:
        """Return once ``applied()`` reaches ``seq`` (True) or after ``timeout_s`` (False).
        Woken by :meth:`notify`; looks again every RECHECK_S besides."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while applied() < seq:
            left = deadline - loop.time()
            if left <= 0:
                return False
            entry = (seq, loop, loop.create_future())
            with self._lock:
                self._waiting.append(entry)
            try:
                if applied() < seq:  # not merged between the check and the registration
                    await asyncio.wait_for(entry[2], min(left, RECHECK_S))
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    if entry in self._waiting:
                        self._waiting.remove(entry)
        return True

    def notify(self, applied: int) -> None:
        """The service has merged everything up to ``applied`` (from any thread)."""
        with self._lock:
            ready = [entry for entry in self._waiting if entry[0] <= applied]
            if not ready:
                return
            self._waiting = [entry for entry in self._waiting if entry[0] > applied]
        for _, loop, future in ready:
            try:
                loop.call_soon_threadsafe(_settle, future)
            except RuntimeError:  # that loop has closed: nobody waits on it any more
                pass


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():  # a wait that timed out has cancelled it
        future.set_result(None)


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
            self.service.applied.notify(self.service.live_seq() or 0)
            return 0
        if found.changes:
            self.service.apply_changes(found.changes)
            self.service.applied.notify(self.service.live_seq() or 0)
        self.service.follow_experiment(found.experiment)
        return len(found.changes)
