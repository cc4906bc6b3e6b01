"""A write waits for its batch to be merged on its replica (``recengine.serve.live.AppliedSignal``):
woken by the follower thread's notify, bounded by its timeout, and never stuck on a merge that
did not signal (it looks again every RECHECK_S)."""

from __future__ import annotations

import asyncio
import threading
import time

from recengine.serve.live import RECHECK_S, AppliedSignal


class Merged:
    """A sequence number another thread advances, as the follower advances the overlay's."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self) -> int:
        return self.seq


def advance_later(signal: AppliedSignal | None, merged: Merged, seq: int, after_s: float) -> threading.Thread:
    def run() -> None:
        time.sleep(after_s)
        merged.seq = seq
        if signal is not None:
            signal.notify(seq)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_followers_notify_wakes_the_write_at_once() -> None:
    signal, merged = AppliedSignal(), Merged()

    async def write() -> tuple[bool, float]:
        thread = advance_later(signal, merged, 3, 0.2)
        start = time.perf_counter()
        visible = await signal.wait(3, merged, timeout_s=5.0)
        waited = time.perf_counter() - start
        thread.join()
        return visible, waited

    visible, waited = asyncio.run(write())
    assert visible and 0.15 < waited < 1.0


def test_several_writes_wait_for_their_own_batches() -> None:
    signal, merged = AppliedSignal(), Merged()

    async def writes() -> list[bool]:
        thread = advance_later(signal, merged, 2, 0.1)
        answers = await asyncio.gather(signal.wait(1, merged, 2.0), signal.wait(2, merged, 2.0),
                                       signal.wait(5, merged, 0.5))
        thread.join()
        return list(answers)

    assert asyncio.run(writes()) == [True, True, False]  # batch 5 never merged: not visible, after 0.5 s


def test_a_merge_without_a_notify_is_seen_within_a_recheck() -> None:
    signal, merged = AppliedSignal(), Merged()

    async def write() -> tuple[bool, float]:
        thread = advance_later(None, merged, 1, 0.05)  # e.g. a snapshot swap: the overlay moved on
        start = time.perf_counter()
        visible = await signal.wait(1, merged, timeout_s=5.0)
        thread.join()
        return visible, time.perf_counter() - start

    visible, waited = asyncio.run(write())
    assert visible and waited < 0.05 + RECHECK_S + 0.5


def test_a_batch_already_merged_returns_without_waiting() -> None:
    signal, merged = AppliedSignal(), Merged()
    merged.seq = 7
    start = time.perf_counter()
    assert asyncio.run(signal.wait(7, merged, timeout_s=5.0))
    assert time.perf_counter() - start < 0.5
