"""A replica's impressions on their way to the writer: buffered, sent in batches.

Logging what a request showed must not add a commit to its latency, so answers put their
rows here and a background thread sends what gathered every ``FLUSH_S`` (or sooner, once
``FLUSH_ROWS`` wait) to the writer, which stores them durably in one transaction. The bound
this costs: a replica killed outright loses at most its last ``FLUSH_S`` of impressions
(a click on one of those items is then attributed by the latest earlier impression, or not
at all). A flush the writer refuses while it restarts is kept and retried, up to
``MAX_BUFFERED_ROWS`` (beyond that the oldest are dropped and counted).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger("recengine.serve")

FLUSH_S = 0.25
FLUSH_ROWS = 5_000
MAX_BUFFERED_ROWS = 200_000

Sink = Callable[[list[dict[str, Any]]], Any]


class ImpressionLog:
    """Collects impression rows and flushes them to ``sink`` (the writer) in the background."""

    def __init__(self, sink: Sink, flush_s: float = FLUSH_S) -> None:
        self.sink = sink
        self.flush_s = flush_s
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="impression-log", daemon=True)
        self._thread.start()

    def add(self, request_id: str, user_id: str | None, items: list[str], model: str | list[str],
            experiment: str | None = None, arm: str | list[str] | None = None) -> None:
        """What one answer showed: ``items`` in order; ``model``/``arm`` per item when they differ
        (interleaving)."""
        now = datetime.now(UTC).replace(tzinfo=None)
        models = model if isinstance(model, list) else [model] * len(items)
        arms = arm if isinstance(arm, list) else [arm] * len(items)
        rows = [{"request_id": request_id, "ts": now, "user_id": user_id or None, "item_id": item,
                 "position": position, "model": models[position], "experiment": experiment, "arm": arms[position]}
                for position, item in enumerate(items)]
        with self._lock:
            self._rows.extend(rows)
            overflow = len(self._rows) - MAX_BUFFERED_ROWS
            if overflow > 0:
                del self._rows[:overflow]
                self.dropped += overflow
            full = len(self._rows) >= FLUSH_ROWS
        if full:
            self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Send what is buffered now; returns the rows the writer stored."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            self.sink(rows)
        except Exception:  # the writer is restarting: keep them for the next round
            self.failures += 1
            with self._lock:
                self._rows[:0] = rows
            logger.warning("could not log %d impressions (kept, retrying)", len(rows), exc_info=True)
            return 0
        self.written += len(rows)
        return len(rows)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()
