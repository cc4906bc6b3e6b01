"""Every replica's metrics in every scrape: a small named Ray actor per domain.

A scrape of ``/<domain>/metrics`` reaches one replica of the domain, chosen by Ray Serve's
proxy. So that it still reports every replica, each replica pushes its own registry's
families (cumulative values, labelled ``replica``) to the domain's :class:`MetricsHub` every
:data:`PUSH_INTERVAL_S`, and the replica answering a scrape swaps its fresh families for
everyone's (:meth:`MetricsHub.exchange`). Every answer then carries the same series whichever
replica gives it, and each series only grows: a replica's snapshot replaces its older ones
only (a snapshot number orders them), never the other way round.

The hub holds snapshots, never sums: it may die with the replica that started it (it is not
detached, so it ends with the domain's replicas), and the next push starts a new one, refilled
by every live replica within one interval. A replica that stops pushing (it died) drops out
after :data:`STALE_AFTER_S`: its series end, as a scrape target's do when it goes away.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.metrics_core import Metric

logger = logging.getLogger("recengine.serve")

HUB_NAMESPACE = "recengine"
PUSH_INTERVAL_S = 1.0  # how stale another replica's series may be in a scrape
STALE_AFTER_S = 15.0  # a replica silent this long is gone (it pushes every second while alive)
CALL_TIMEOUT_S = 2.0  # a hub that does not answer within this is treated as down

Families = list[Metric]


def hub_name(domain: str) -> str:
    return f"recengine-metrics-{domain}"


class MetricsHub:
    """The latest snapshot of each live replica's metric families (a Ray actor)."""

    def __init__(self, stale_after_s: float = STALE_AFTER_S) -> None:
        self.stale_after_s = stale_after_s
        self._snapshots: dict[str, tuple[int, float, Families]] = {}  # replica: (number, received, families)

    def push(self, replica: str, number: int, families: Families) -> None:
        """Keep ``families`` as ``replica``'s, unless a newer snapshot of it is already here."""
        held = self._snapshots.get(replica)
        if held is None or number > held[0]:
            self._snapshots[replica] = (number, time.monotonic(), families)

    def exchange(self, replica: str, number: int, families: Families) -> dict[str, Families]:
        """Push ``replica``'s families, then every live replica's (its own included)."""
        self.push(replica, number, families)
        return self.snapshots()

    def snapshots(self) -> dict[str, Families]:
        now = time.monotonic()
        for replica in [r for r, (_, received, _) in self._snapshots.items() if now - received > self.stale_after_s]:
            del self._snapshots[replica]
        return {replica: families for replica, (_, _, families) in self._snapshots.items()}


class HubLink:
    """A replica's side: pushes its snapshot every interval, exchanges it on a scrape."""

    def __init__(self, domain: str, replica: str, collect: Callable[[], Families],
                 interval_s: float = PUSH_INTERVAL_S) -> None:
        self.domain = domain
        self.replica = replica
        self._collect = collect
        self.interval_s = interval_s
        self._numbers = itertools.count(1)
        self._snapshot_lock = threading.Lock()  # snapshot numbers follow the order snapshots are taken in
        self._handle: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"metrics-push-{domain}", daemon=True)

    def start(self) -> HubLink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + CALL_TIMEOUT_S)

    def snapshot(self) -> tuple[int, Families]:
        with self._snapshot_lock:
            return next(self._numbers), self._collect()

    def exchange(self) -> dict[str, Families]:
        """Every live replica's families, this one's as of now; raises when the hub is unreachable."""
        import ray

        number, families = self.snapshot()
        return dict(self._call(lambda hub: ray.get(hub.exchange.remote(self.replica, number, families),
                                                   timeout=CALL_TIMEOUT_S)))

    def push(self) -> None:
        import ray

        number, families = self.snapshot()
        self._call(lambda hub: ray.get(hub.push.remote(self.replica, number, families), timeout=CALL_TIMEOUT_S))

    def _call(self, call: Callable[[Any], Any]) -> Any:
        """``call(hub)``; once more on a fresh hub when the one held died."""
        from ray.exceptions import RayActorError

        try:
            return call(self._hub())
        except RayActorError:  # the replica that started it is gone: start (or find) the next one
            self._handle = None
            return call(self._hub())

    def _hub(self) -> Any:
        if self._handle is None:
            import ray

            self._handle = ray.remote(MetricsHub).options(
                name=hub_name(self.domain), namespace=HUB_NAMESPACE, get_if_exists=True, num_cpus=0,
                max_concurrency=1,  # pushes apply one at a time: no locks needed in the hub
            ).remote()
        return self._handle

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.push()
            except Exception as exc:  # the hub restarting, Ray shutting down: the next push retries
                self._handle = None
                logger.debug("pushing %s metrics to the hub failed: %s", self.domain, exc)
