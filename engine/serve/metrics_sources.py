"""The series a scrape reads from outside the replica that answers it: the domain's writer
(one per store, so one source of truth for what it committed and how far it lags) and Ray
Serve's own metrics for the domain's application (from each Ray node's metrics export port).

Both are read when a scrape comes, by whichever replica answers it: every replica reads the
same writer and the same nodes, so the answers agree. A writer that cannot be read raises
:class:`SourceUnavailable`, a Ray node that does not answer is reported; the scrape then
leaves those series out and counts the error.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from recengine.serve.live import LiveLog, LocalLog, RayLog

WRITER_TIMEOUT_S = 2.0
RAY_NODE_TIMEOUT_S = 2.0
RAY_SERVE_PREFIX = "ray_serve_"

Families = list[Metric]


class SourceUnavailable(Exception):
    """A source of series did not answer this scrape (its series are left out)."""


# -- the writer ----------------------------------------------------------------------------
def writer_stats(log: LiveLog | None) -> dict[str, Any] | None:
    """The writer's ``live_stats()``; None when the domain has no writer this process can ask
    (served read-only); raises :class:`SourceUnavailable` when its writer does not answer."""
    if isinstance(log, LocalLog):
        return log.writer.live_stats()
    if not isinstance(log, RayLog):
        return None
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    from recengine.live_writer import find_writer

    handle = find_writer(log.store_path)
    if handle is None:
        raise SourceUnavailable(f"no writer is running for {log.store_path}")
    try:
        return dict(ray.get(handle.call.remote("live_stats"), timeout=WRITER_TIMEOUT_S))
    except (RayActorError, GetTimeoutError) as exc:
        raise SourceUnavailable(f"the writer did not answer: {type(exc).__name__}") from None


def writer_families(domain: str, stats: dict[str, Any] | None) -> Families:
    """``recengine_writer_up`` (0 when ``stats`` is None: the writer did not answer) and,
    when it answered, where its log stands."""
    up = GaugeMetricFamily("recengine_writer_up", "1 when the domain's writer answered this scrape, else 0.",
                           labels=["domain"])
    up.add_metric([domain], 0.0 if stats is None else 1.0)
    if stats is None:
        return [up]
    gauges = (
        ("recengine_writer_seq", "seq", "Sequence number of the last batch the writer committed (durable)."),
        ("recengine_writer_pending_batches", "pending_batches",
         "Batches queued at the writer and not yet committed (the writer's lag)."),
        ("recengine_writer_published_seq", "published_seq", "Last batch the published snapshot holds."),
        ("recengine_writer_batches_since_publish", "batches_since_publish",
         "Batches committed since the snapshot was last published."),
        ("recengine_writer_records_since_publish", "records_since_publish",
         "Records committed since the snapshot was last published."),
    )
    families: Families = [up]
    for name, key, help_text in gauges:
        family = GaugeMetricFamily(name, help_text, labels=["domain"])
        family.add_metric([domain], float(stats[key]))
        families.append(family)
    commit = GaugeMetricFamily("recengine_writer_last_commit_seconds", "How long the writer's last group commit took.",
                               labels=["domain"])
    commit.add_metric([domain], float(stats["last_commit_ms"]) / 1000)
    families.append(commit)
    return families


# -- Ray Serve's own metrics -----------------------------------------------------------------
def ray_serve_families(domain: str) -> tuple[Families, list[str]]:
    """Ray Serve's series of the ``domain`` application (its proxy's requests and latencies,
    its replicas' health and queues), read from every live node's metrics export port, and
    why each node that did not answer was left out. Nothing outside Ray."""
    import ray

    if not ray.is_initialized():
        return [], []
    ports = [(node["NodeManagerAddress"], node["MetricsExportPort"]) for node in ray.nodes()
             if node.get("Alive") and node.get("MetricsExportPort")]
    texts, failures = [], []
    for address, port in ports:
        url = f"http://{address}:{port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=RAY_NODE_TIMEOUT_S) as answer:
                texts.append(answer.read().decode("utf-8"))
        except OSError as exc:  # that node's series are left out, the others' kept
            failures.append(f"Ray's metrics at {url} did not answer: {exc}")
    return merge_families(application_families(text, domain) for text in texts), failures


def application_families(text: str, application: str) -> Families:
    """The ``ray_serve_*`` families of one node's export, only the ``application``'s samples.

    A node exports every process's series (hundreds of KB); lines of other metrics and other
    applications are dropped before parsing, and the parsed samples are checked exactly."""
    tag = f'application="{application}"'
    kept = [line for line in text.splitlines()
            if line.startswith((f"# HELP {RAY_SERVE_PREFIX}", f"# TYPE {RAY_SERVE_PREFIX}"))
            or (line.startswith(RAY_SERVE_PREFIX) and tag in line)]
    families = []
    for family in text_string_to_metric_families("\n".join(kept) + "\n"):
        samples = [s for s in family.samples if s.labels.get("application") == application]
        if samples:
            family.samples = samples
            families.append(family)
    return families


def merge_families(parts: Iterable[Families]) -> Families:
    """One family per name, holding the samples of every part (the text format allows a
    family once; parts differ in their labels, such as ``replica`` or the Ray node)."""
    merged: dict[str, Metric] = {}
    for families in parts:
        for family in families:
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            into.samples.extend(family.samples)
    return list(merged.values())
