"""Ray Serve: one application per domain (``/<domain>``), each a FastAPI ingress deployment.

Replicas read the domain's published snapshot into memory (never the live DuckDB file)
and load its model bundle. ``user_config`` names the bundle and snapshot, so deploying a
new bundle or snapshot only calls ``reconfigure`` on the live replicas: requests keep being
answered by the old model until the new one is loaded, then by the new one.
Requests are scored in dynamic batches (``@serve.batch``): each request is validated on its
own before it joins a batch, and a batch answers each request with its own response or
error, so one bad request never fails its neighbours. The replica's per-request access log
is off unless asked for (``access_log``; ``recengine serve --access-log``).

Failures are bounded at the Serve level: the proxy answers 408 to a request not answered
within ``REQUEST_TIMEOUT_S``, and 503 at once to one that finds ``MAX_QUEUED_REQUESTS`` already
waiting for a replica (a domain whose replicas are down or busy); a request in flight on a
replica that dies gets a 500, and ``/<domain>/health`` with no ready replica a 503 within 1 s.
``recengine.serve.proxy_errors`` runs in the proxy and gives all of them the API's JSON error
shape (``timeout``, ``overloaded``, ``replica_failed``, ``starting``), named to the proxies by
the nodes' environment or the Serve controller's runtime env (:func:`serve_options`). With
``replicas`` > 1 the survivors keep answering while a dead replica is replaced.
"""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from ray import serve

from recengine.serve.api import build_api
from recengine.serve.live import RayLog
from recengine.serve.proxy_errors import proxy_env_vars
from recengine.serve.schemas import RecommendRequest, RecommendResponse
from recengine.serve.service import RecommendService

DEFAULT_CPUS_PER_REPLICA = 0.25  # four domains share two cores
MAX_BATCH_SIZE = 16
# No waiting for a batch to fill: requests that queue while a batch is being scored form the
# next one, so batches still fill under load, and a lone request is not held back (measured
# at 100k items, 1 client: p50 24.9 ms with a 2 ms wait, 20.2 ms without).
BATCH_WAIT_S = 0.0
# The proxy's end-to-end limit on a request (``http_options.request_timeout_s``): no request
# waits unbounded for a replica that is dead or restarting; a healthy one answers in ms.
REQUEST_TIMEOUT_S = 5.0
# Requests a proxy holds waiting for a replica before it answers 503 at once (Ray queues
# requests for a domain whose replicas are all dead or restarting; it has no fail-fast for
# that): twice what 128 connections leave waiting on one replica (64 ongoing), so load alone
# never gets a 503, while a dead domain answers the 129th waiting request and on at once.
MAX_QUEUED_REQUESTS = 128


def http_options(host: str, port: int) -> dict[str, Any]:
    """The proxy's HTTP options (``serve.start`` / the config's ``http_options``)."""
    return {"host": host, "port": port, "request_timeout_s": REQUEST_TIMEOUT_S}


def controller_options() -> dict[str, Any]:
    """The Serve controller's options (``serve.start`` / the config's ``controller_options``):
    its env vars make the proxies it starts, which inherit its runtime env, run
    ``recengine.serve.proxy_errors`` (Ray 2.60 refuses ``http_options.middlewares``). Applied
    only when the controller is first created, like ``http_options``. Replicas inherit that
    runtime env too, so none can take one of Ray's ready workers: with four domains on two
    cores a replica restart took 37-55 s instead of 10-11 s (measured)."""
    return {"runtime_env": {"env_vars": proxy_env_vars()}}


def serve_options(host: str, port: int, via_controller: bool = False) -> dict[str, Any]:
    """Everything ``serve.start`` needs for the production proxy: ``serve.start(**serve_options(...))``.
    A local cluster (``recengine.ray_env.init_ray``) has the proxy's JSON errors in its nodes'
    environment; ``via_controller`` also names them in the controller's runtime env, for a
    cluster whose nodes may lack it (joined, or ``serve deploy``), at :func:`controller_options`'s cost."""
    options: dict[str, Any] = {"http_options": http_options(host, port)}
    if via_controller:
        options["controller_options"] = controller_options()
    return options


@serve.deployment(
    name="recommender",
    ray_actor_options={"num_cpus": DEFAULT_CPUS_PER_REPLICA},
    max_ongoing_requests=64,  # enough queued requests for a batch to fill
    max_queued_requests=MAX_QUEUED_REQUESTS,
    health_check_period_s=5,
    logging_config={"enable_access_log": False},  # a line per request costs CPU and disk: opt in
)
@serve.ingress()
class DomainRecommender:
    """A replica of one domain's recommendation service behind its FastAPI app."""

    def __init__(self, domain: str) -> None:
        # thread pools: the Recommender caps torch's and BLAS's threads to one while it
        # answers (a fractional-CPU replica must not spin intra-op threads on shared cores)
        self.service = RecommendService(domain)

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Ray Serve's proxy gives each request an X-Request-ID and echoes it: the app only reads it
        return build_api(self.service.domain, lambda: self.service, recommend=self.recommend, proxied=True)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Load the bundle/snapshot the config names, then swap (no request is dropped); with
        a store, write through its writer and follow its log."""
        store = user_config.get("store")
        if store and self.service.log is None:
            self.service.log = RayLog(store)
        self.service.configure(user_config)
        self.service.start_following()
        # The catalogue, id maps and snapshot are hundreds of thousands of long-lived Python
        # objects; left in the collector's generations, every full collection walks them all
        # in the middle of some request (~0.9 ms a request on average at 100k items). Freeze
        # what is loaded now: it is still freed by reference counting after the next swap.
        gc.collect()
        gc.freeze()

    def check_health(self) -> None:
        self.service.check_health()

    async def recommend(self, request: RecommendRequest) -> RecommendResponse | Exception:
        """Check ``request`` alone (a bad one raises here, never inside a batch), then
        score it in the next batch."""
        self.service.validate(request)
        return await self.recommend_batch(request)

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def recommend_batch(self, requests: list[RecommendRequest]) -> list[RecommendResponse | Exception]:
        """Each request's response or its own error: one failing request fails only itself."""
        return self.service.recommend_many(requests)


# what @serve.deployment made of the class (mypy keeps a decorated class's own type)
_DEPLOYMENT = cast(serve.Deployment, DomainRecommender)


def domain_application(domain: str, bundle: str | Path, snapshot: str | Path | None = None,
                       num_cpus: float = DEFAULT_CPUS_PER_REPLICA, replicas: int = 1,
                       access_log: bool = False, store: str | Path | None = None, keys: str | Path | None = None,
                       require_key_for_reads: bool = False, create_items: bool = False) -> serve.Application:
    """The Serve application of one domain, bound to its bundle and published snapshot;
    ``access_log`` turns on the replicas' line-per-request access log. With ``store`` (whose
    writer must be running: ``recengine.live_writer.start_writer``) the domain takes writes,
    checked against the ``keys`` file."""
    user_config = {"bundle": str(bundle), "snapshot": str(snapshot) if snapshot else None,
                   "snapshot_version": published_version(snapshot) if snapshot else None,
                   "store": str(store) if store else None, "keys": str(keys) if keys else None,
                   "require_key_for_reads": require_key_for_reads, "create_items": create_items,
                   "deployed_at": datetime.now(UTC).isoformat()}
    return _DEPLOYMENT.options(
        user_config=user_config, num_replicas=replicas, ray_actor_options={"num_cpus": num_cpus},
        logging_config={"enable_access_log": access_log},
    ).bind(domain)


def published_version(snapshot: str | Path) -> int:
    from recengine.feature_store.snapshot import current_version_dir, read_manifest

    return read_manifest(current_version_dir(snapshot)).version


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Entry point for Serve config files (``import_path: recengine.serve.deployment:app_builder``)."""
    return _DEPLOYMENT.bind(args["domain"])
