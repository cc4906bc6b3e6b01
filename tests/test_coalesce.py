"""Shared report computations (engine/serve/coalesce.py): fewer runs, never a stale answer."""

from __future__ import annotations

import asyncio

import pytest

from recengine.serve.coalesce import Coalescer


class Store:
    """A counter of acknowledged writes and a slow report that reads it when it starts."""

    def __init__(self) -> None:
        self.writes = 0
        self.reports = 0

    async def report(self) -> int:
        seen = self.writes
        self.reports += 1
        await asyncio.sleep(0.02)
        return seen


def test_a_burst_shares_two_computations_and_each_sees_the_writes_before_it() -> None:
    async def scenario() -> None:
        store, coalescer = Store(), Coalescer[int]()

        async def write_then_ask() -> tuple[int, int]:
            store.writes += 1
            acknowledged = store.writes
            return acknowledged, await coalescer.run("online", store.report)

        answers = await asyncio.gather(*(write_then_ask() for _ in range(50)))
        assert all(seen >= acknowledged for acknowledged, seen in answers)  # read your writes
        assert store.reports == coalescer.computations == 1  # all asked before the first started
        late = [asyncio.ensure_future(write_then_ask()) for _ in range(3)]
        await asyncio.sleep(0.005)  # the second burst's computation is running...
        later = [asyncio.ensure_future(write_then_ask()) for _ in range(20)]  # ...these queue behind it
        answers = await asyncio.gather(*late, *later)
        assert all(seen >= acknowledged for acknowledged, seen in answers)
        assert store.reports == 3

    asyncio.run(scenario())


def test_different_keys_do_not_share() -> None:
    async def scenario() -> None:
        calls: list[str] = []

        def report(key: str):  # type: ignore[no-untyped-def]
            async def compute() -> str:
                calls.append(key)
                await asyncio.sleep(0.01)
                return key
            return compute

        coalescer = Coalescer[str]()
        got = await asyncio.gather(*(coalescer.run(key, report(key)) for key in ("a", "b", "a", "b")))
        assert got == ["a", "b", "a", "b"] and sorted(calls) == ["a", "b"]

    asyncio.run(scenario())


def test_an_error_reaches_every_waiter_and_the_next_ask_computes_again() -> None:
    async def scenario() -> None:
        attempts = 0

        async def failing() -> int:
            nonlocal attempts
            attempts += 1
            await asyncio.sleep(0.01)
            raise LookupError("no experiment has run")

        coalescer = Coalescer[int]()
        results = await asyncio.gather(*(coalescer.run("x", failing) for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, LookupError) for r in results) and attempts == 1
        with pytest.raises(LookupError):
            await coalescer.run("x", failing)
        assert attempts == 2

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_others_their_answer() -> None:
    async def scenario() -> None:
        async def slow() -> str:
            await asyncio.sleep(0.05)
            return "report"

        coalescer = Coalescer[str]()
        impatient = asyncio.ensure_future(coalescer.run("x", slow))
        patient = asyncio.ensure_future(coalescer.run("x", slow))
        await asyncio.sleep(0.01)
        impatient.cancel()  # its request timed out
        assert await patient == "report"
        assert impatient.cancelled()

    asyncio.run(scenario())
