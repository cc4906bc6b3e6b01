"""Prometheus metrics of one domain: ``GET /<domain>/metrics`` (text format 0.0.4).

What a scrape reports (every series is labelled ``domain``; a replica's own are labelled
``replica`` too, and a scrape carries every live replica's, see ``recengine.serve.metrics_hub``):

- ``recengine_http_requests_total{route,method,status}`` and the latency histogram
  ``recengine_http_request_duration_seconds{route,method}``: every request the replica's app
  answered, its guard's 400/413 refusals included. ``route`` is the matched route's template
  (``/similar/{item_id}``, never the raw path), ``unmatched`` for paths no route serves;
  status ``499``: the client went away before an answer.
- ``recengine_records_written_total{kind}``: records the writer stored for this replica's writes;
  ``recengine_impressions_written_total`` (and ``_dropped_total``, ``_pending``): the
  impressions its answers logged.
- ``recengine_recommendations_total{model,arm,experiment}`` and
  ``recengine_recommended_items_total{...}``: recommendations answered, and items shown in them.
- ``recengine_model_info{model,snapshot_version} 1``, ``recengine_replica_ready``,
  ``recengine_replica_live_seq`` and ``recengine_replica_lag_batches``: what each replica serves
  and how far it is behind the writer.
- ``recengine_writer_*``: the writer's own figures (``recengine.serve.metrics_sources``).
- ``ray_serve_*``: Ray Serve's own series of this application (its proxy and replicas).
- ``recengine_metrics_source_errors_total{source}``: scrapes that could not read the writer,
  the other replicas (``hub``) or Ray's metrics; their series are left out, never a 500.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recengine.serve.metrics_hub import HubLink
from recengine.serve.metrics_sources import (
    SourceUnavailable,
    merge_families,
    ray_serve_families,
    writer_families,
    writer_stats,
)

if TYPE_CHECKING:
    from recengine.serve.service import RecommendService

logger = logging.getLogger("recengine.serve")

# request latency buckets, seconds: a recommendation takes ms, a write batch up to a commit
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"
CLIENT_GONE = 499  # no answer was sent: the client went away first (nginx's code for it)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class PrometheusText(Response):
    """Prometheus' text exposition format, version 0.0.4."""

    media_type = CONTENT_TYPE_PLAIN_0_0_4


class DomainMetrics:
    """One domain's instruments in this process (one replica), in their own registry."""

    def __init__(self, domain: str, replica: str) -> None:
        self.domain = domain
        self.replica = replica
        self.registry = CollectorRegistry(auto_describe=True)
        own = ["domain", "replica"]
        self.requests = Counter("recengine_http_requests", "HTTP requests answered, by route template and status.",
                                [*own, "route", "method", "status"], registry=self.registry)
        self.latency = Histogram("recengine_http_request_duration_seconds",
                                 "Seconds from a request's arrival at the replica to its answer.",
                                 [*own, "route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.records_written = Counter("recengine_records_written",
                                       "Records the writer stored for writes this replica took, by kind.",
                                       [*own, "kind"], registry=self.registry)
        self.recommendations = Counter("recengine_recommendations", "Recommendations answered, by model and arm.",
                                       [*own, "model", "arm", "experiment"], registry=self.registry)
        self.recommended_items = Counter("recengine_recommended_items",
                                         "Items shown in recommendations, by model and arm.",
                                         [*own, "model", "arm", "experiment"], registry=self.registry)
        self.source_errors = Counter("recengine_metrics_source_errors",
                                     "Scrapes whose series from a source were left out: it did not answer.",
                                     [*own, "source"], registry=self.registry)
        self.get_service: Callable[[], RecommendService] | None = None
        self.hub: HubLink | None = None
        self.registry.register(ReplicaState(self))

    # -- what the app records ----------------------------------------------------------------
    def record_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "OTHER"
        self.requests.labels(self.domain, self.replica, route, method, str(status)).inc()
        self.latency.labels(self.domain, self.replica, route, method).observe(seconds)

    def record_write(self, kind: str, records: int) -> None:
        """A write batch of ``kind`` (events, items, users) stored ``records`` new records."""
        self.records_written.labels(self.domain, self.replica, kind).inc(records)

    def record_recommendation(self, model: str, arm: str | None, experiment: str | None, items: int) -> None:
        """One recommendation answered by ``model`` (``arm`` of ``experiment`` when one runs)."""
        labels = (self.domain, self.replica, model, arm or "", experiment or "")
        self.recommendations.labels(*labels).inc()
        self.recommended_items.labels(*labels).inc(items)

    # -- what a scrape answers ---------------------------------------------------------------
    def own_families(self) -> list[Metric]:
        return list(self.registry.collect())

    def render(self) -> bytes:
        """Every series of the domain as text; a source that does not answer is left out and
        counted (``recengine_metrics_source_errors_total``), so a scrape never fails for it."""
        shared = [*self._read("writer", self._writer_families), *self._read("ray_serve", self._ray_serve_families)]
        replicas: Iterable[list[Metric]] = [self.own_families()]
        if self.hub is not None:
            try:
                replicas = self.hub.exchange().values()
            except Exception as exc:  # the hub restarting: this replica's own series, the others' next time
                self.source_errors.labels(self.domain, self.replica, "hub").inc()
                logger.info("%s metrics: the other replicas' series are left out: %s", self.domain, exc)
                replicas = [self.own_families()]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Families(merge_families([*replicas, shared])))
        return generate_latest(registry)

    def _writer_families(self) -> list[Metric]:
        service = self.get_service() if self.get_service is not None else None
        if service is None or service.log is None:
            return []  # served read-only: no writer
        try:
            stats = writer_stats(service.log)
        except SourceUnavailable as exc:
            self.source_errors.labels(self.domain, self.replica, "writer").inc()
            logger.info("%s metrics: the writer's series are left out: %s", self.domain, exc)
            return writer_families(self.domain, None)
        return [] if stats is None else writer_families(self.domain, stats)

    def _ray_serve_families(self) -> list[Metric]:
        families, failures = ray_serve_families(self.domain)
        if failures:
            self.source_errors.labels(self.domain, self.replica, "ray_serve").inc()
            logger.info("%s metrics: Ray Serve's series of %d node(s) are left out: %s", self.domain,
                        len(failures), "; ".join(failures))
        return families

    def _read(self, source: str, read: Callable[[], list[Metric]]) -> list[Metric]:
        """``read()``, or nothing (counted and logged) when it fails unexpectedly."""
        try:
            return read()
        except Exception as exc:
            self.source_errors.labels(self.domain, self.replica, source).inc()
            logger.warning("%s metrics: the %s series are left out: %s", self.domain, source, exc)
            return []


class ReplicaState(Collector):
    """What the replica serves, read from its service whenever the registry is collected."""

    def __init__(self, metrics: DomainMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        get_service = self.metrics.get_service
        if get_service is None:
            return []
        try:
            service = get_service()
            return [*self._serving(service), *self._impressions(service)]
        except Exception:  # a bug reading the service: the scrape still answers, without these series
            logger.exception("%s metrics: the replica's state is left out", self.metrics.domain)
            return []

    def _serving(self, service: RecommendService) -> list[Metric]:
        health = service.health()
        own = [self.metrics.domain, self.metrics.replica]
        ready = GaugeMetricFamily("recengine_replica_ready", "1 when the replica has a model and snapshot loaded.",
                                  labels=["domain", "replica"])
        ready.add_metric(own, 1.0 if health.status == "ok" else 0.0)
        families: list[Metric] = [ready]
        if health.model is not None:
            info = GaugeMetricFamily("recengine_model_info", "The model bundle (name/version) and snapshot serving.",
                                     labels=["domain", "replica", "model", "snapshot_version"])
            snapshot = "" if health.snapshot_version is None else str(health.snapshot_version)
            info.add_metric([*own, health.model, snapshot], 1.0)
            families.append(info)
        for name, value, help_text in (
            ("recengine_replica_live_seq", health.live_seq, "Last live batch the replica has merged."),
            ("recengine_replica_lag_batches", health.lag_batches,
             "Batches the writer committed that the replica has not merged yet."),
        ):
            if value is not None:
                family = GaugeMetricFamily(name, help_text, labels=["domain", "replica"])
                family.add_metric(own, float(value))
                families.append(family)
        return families

    def _impressions(self, service: RecommendService) -> list[Metric]:
        """The replica's impression log: rows stored by the writer, waiting, dropped, failed flushes."""
        log = service.impressions
        if log is None:
            return []
        own = [self.metrics.domain, self.metrics.replica]
        families: list[Metric] = []
        for name, value, help_text in (
            ("recengine_impressions_written", log.written, "Impression rows the writer stored for this replica."),
            ("recengine_impressions_dropped", log.dropped,
             "Impression rows dropped: the buffer overflowed while the writer could not take them."),
            ("recengine_impression_flush_failures", log.failures, "Impression flushes the writer refused (retried)."),
        ):
            counter = CounterMetricFamily(name, help_text, labels=["domain", "replica"])
            counter.add_metric(own, float(value))
            families.append(counter)
        pending = GaugeMetricFamily("recengine_impressions_pending", "Impression rows buffered, not yet sent.",
                                    labels=["domain", "replica"])
        pending.add_metric(own, float(log.pending()))
        return [*families, pending]


class Families(Collector):
    """Families already collected, for rendering once."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class MetricsMiddleware:
    """Counts and times every request by route template, method and status. Outermost: it
    sees the guard's refusals (400, 413) and 500s as the client does."""

    def __init__(self, app: ASGIApp, metrics: DomainMetrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = route_template(self.router.routes, scope)
        status = CLIENT_GONE

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = 500 if status == CLIENT_GONE else status  # the server's error middleware answers 500
            raise
        finally:
            self.metrics.record_request(route, scope["method"], status, time.perf_counter() - started)


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the route ``scope`` reaches (a route that has the path but not the
    method counts: its 405), else :data:`UNMATCHED_ROUTE` (bounded label values)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", UNMATCHED_ROUTE))
        if match is Match.PARTIAL and partial is None:
            partial = str(getattr(route, "path", UNMATCHED_ROUTE))
    return partial or UNMATCHED_ROUTE


_DOMAINS: dict[str, DomainMetrics] = {}
_DOMAINS_LOCK = threading.Lock()


def metrics_for(domain: str) -> DomainMetrics:
    """This process's instruments of ``domain`` (one set per process: a replica serves one domain)."""
    with _DOMAINS_LOCK:
        metrics = _DOMAINS.get(domain)
        if metrics is None:
            metrics = _DOMAINS[domain] = DomainMetrics(domain, replica_name())
        return metrics


def replica_name() -> str:
    """The Ray Serve replica id inside a replica, else host and process id."""
    serve_id = _serve_replica_id()
    return serve_id if serve_id is not None else f"{socket.gethostname()}-{os.getpid()}"


def _serve_replica_id() -> str | None:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # not inside a Serve replica
        return None


def install_metrics(app: FastAPI, domain: str, get_service: Callable[[], RecommendService],
                    dependencies: Sequence[Any] = (),
                    responses: dict[int | str, dict[str, Any]] | None = None) -> DomainMetrics:
    """Time every request of ``app`` and serve ``GET /metrics`` (behind ``dependencies``: the
    domain's read-key rule). Call after the app's other middleware: this one must be outermost.
    Inside a Ray Serve replica it also joins the domain's hub, so any replica reports all."""
    metrics = metrics_for(domain)
    metrics.get_service = get_service
    if metrics.hub is None and _serve_replica_id() is not None:
        metrics.hub = HubLink(domain, metrics.replica, metrics.own_families).start()
    app.add_middleware(MetricsMiddleware, metrics=metrics, router=app.router)

    @app.get("/metrics", response_class=PrometheusText, dependencies=list(dependencies),
             responses={200: {"description": "Prometheus text format 0.0.4.",
                              "content": {CONTENT_TYPE_PLAIN_0_0_4: {"schema": {"type": "string"}}}},
                        **(responses or {})})
    async def prometheus_metrics() -> PrometheusText:
        """The domain's metrics in Prometheus' text format, every replica's series included (a
        scrape reaches one replica; the others' are at most a second old)."""
        return PrometheusText(await run_in_threadpool(metrics.render))

    return metrics
