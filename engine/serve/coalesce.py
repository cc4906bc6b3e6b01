"""Concurrent asks for the same report share one computation, without reading stale data.

The dashboard's reports (``/experiment``, ``/online``) flush this replica's impressions and
ask the store's writer to aggregate the logs: tens of milliseconds each, paid per request.
Under load (a page polled by many viewers, a script in a loop) every request queued its own
copy, so these endpoints were the first to hit the request timeout. A :class:`Coalescer`
runs at most one computation per key at a time and lets every ask that arrives while it runs
share the *next* one: that one starts after the ask, so it sees every write acknowledged
before the ask (a report is never older than its request), and a burst of N asks costs at
most two computations, not N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

Value = TypeVar("Value")


class Coalescer(Generic[Value]):
    """Per key: one computation running, and one shared computation queued behind it."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Value]] = {}
        self._queued: dict[Hashable, asyncio.Future[Value]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks
        self.computations = 0  # how many ran (what coalescing saves, for tests and metrics)

    async def run(self, key: Hashable, compute: Callable[[], Awaitable[Value]]) -> Value:
        """``compute()``'s result (or error) from a computation that started after this call.

        Cancelling one caller (its request timed out) does not cancel the computation the
        others wait for.
        """
        queued = self._queued.get(key)
        if queued is None:
            queued = asyncio.get_running_loop().create_future()
            queued.add_done_callback(_retrieve)  # an error nobody awaits any more is not "never retrieved"
            self._queued[key] = queued
            task = asyncio.ensure_future(self._start_after_running(key, queued, compute))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(queued)

    async def _start_after_running(self, key: Hashable, result: asyncio.Future[Value],
                                   compute: Callable[[], Awaitable[Value]]) -> None:
        running = self._running.get(key)
        if running is not None:
            await asyncio.wait([running])  # whatever its outcome: ours starts after it
        del self._queued[key]  # asks from now on queue behind this computation
        self._running[key] = result
        self.computations += 1
        try:
            result.set_result(await compute())
        except asyncio.CancelledError:  # the loop is shutting down: so are its waiters
            result.cancel()
            raise
        except Exception as exc:  # every waiter gets the error its own computation would have raised
            result.set_exception(exc)
        finally:
            if self._running.get(key) is result:
                del self._running[key]


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
