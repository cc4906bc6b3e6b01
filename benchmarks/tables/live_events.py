"""``live_events.json``: durable writes over HTTP, how soon replicas see them, and reads while they stream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import count, table, times, verdict
from benchmarks.tables.section import Headline, Section


def _by_batch(data: Mapping[str, Any], batch: int) -> list[Mapping[str, Any]]:
    return sorted((x for x in data["throughput"] if x["batch"] == batch), key=lambda x: x["connections"])


def _joined(levels: list[Mapping[str, Any]], key: str, digits: int = 0) -> str:
    return " / ".join(f"{level[key]:,.{digits}f}" for level in levels)


def _summary(data: Mapping[str, Any]) -> str:
    t, vis, rec = data["targets"], data["visibility"], data["recommend"]
    raw = data["raw_duckdb"]
    rows = []
    for batch in sorted({x["batch"] for x in data["throughput"]}, reverse=True):
        levels = _by_batch(data, batch)
        writers = " / ".join(str(x["connections"]) for x in levels)
        non_2xx = sum(x["non_2xx"] for x in levels)
        figure = (f"{_joined(levels, 'events_per_s')} (p99 {_joined(levels, 'p99_ms')} ms, "
                  f"{non_2xx} non-2xx)")
        commit = "the same batches" if batch > 1 else "one commit each"
        insert = "Arrow insert" if batch > 1 else "insert"
        baseline = f"raw DuckDB {insert} of {commit}: {count(raw[str(batch)]['events_per_s'])}"
        target = (f"≥ {t['events_per_s_batch100_min']:,} at best ({count(t['events_per_s_batch100_best'])} at "
                  f"{t['events_per_s_batch100_best_at']}) {verdict(t['events_per_s_met'])}" if batch == 100 else "—")
        rows.append([f"acknowledged durable events/s, batches of {batch}, {writers} writers", figure, baseline, target])
    rows.append([f"acknowledgement → visible on every replica (the bought item gone from `/recommend`), "
                 f"{vis['samples']} samples",
                 f"p50 {vis['everywhere_p50_ms']:.1f} ms, p99 {vis['everywhere_p99_ms']:.1f} ms, "
                 f"max {vis['everywhere_max_ms']:.1f} ms", f"the write's own answer: p50 {vis['write_p50_ms']:.1f}, "
                 f"p99 {vis['write_p99_ms']:.1f} ms",
                 f"p99 ≤ {t['visible_p99_max_ms']:,.0f} ms {verdict(t['visible_met'])}"])
    phases = rec["phases"]
    during, before, after = phases["while writes stream"], phases["without writes"], phases["after writes"]
    rows.append([f"`/recommend` p50 / p99 while {rec['writes']['events_per_s']:,.0f} events/s stream "
                 f"({rec['connections']} connections)", f"{during['p50_ms']:.1f} / {during['p99_ms']:.1f} ms",
                 f"without writes: {before['p50_ms']:.1f} / {before['p99_ms']:.1f} ms → {times(rec['p50_ratio'])} / "
                 f"{times(rec['p99_ratio'])}; after: {after['p50_ms']:.1f} / {after['p99_ms']:.1f} ms",
                 f"p50 and p99 ≤ {t['recommend_ratio_max']:g}× {verdict(t['recommend_met'])}"])
    return table(["", "figure", "same-run baseline", "target"], rows)


def _throughput(data: Mapping[str, Any]) -> str:
    rows = [[x["batch"], x["connections"], count(x["events_per_s"]), f"{x['p50_ms']:.1f}", f"{x['p99_ms']:.1f}",
             x["non_2xx"], f"{x['logged_events_per_s']:,.0f}"]
            for x in sorted(data["throughput"], key=lambda x: (x["batch"], x["connections"]))]
    return table(["batch", "writers", "acknowledged events/s", "p50 ms", "p99 ms", "non-2xx",
                  "events/s in the live log"], rows, "rrrrrrr")


def _phases(data: Mapping[str, Any]) -> str:
    rows = [[name, f"{p['rps_2xx']:.0f}", f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}", p["non_2xx"]]
            for name, p in data["recommend"]["phases"].items()]
    return table(["`/recommend` phase", "2xx/s", "p50 ms", "p99 ms", "non-2xx"], rows, "lrrrr")


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    t, vis = data["targets"], data["visibility"]
    raw = data["raw_duckdb"]["100"]["events_per_s"]
    return (
        Headline("live writes over HTTP", f"acknowledged durable events/s (batches of 100, "
                                          f"{t['events_per_s_batch100_best_at']} writers); acknowledgement → "
                                          "visible on every replica, p99",
                 f"{count(t['events_per_s_batch100_best'])}; {vis['everywhere_p99_ms']:.1f} ms",
                 f"raw DuckDB Arrow insert {count(raw)}; the write's own answer {vis['write_p99_ms']:.1f} ms",
                 f"≥ {t['events_per_s_batch100_min']:,}: {verdict(t['events_per_s_met'])}; "
                 f"≤ {t['visible_p99_max_ms']:,.0f} ms: {verdict(t['visible_met'])}"),
    )


def render(data: Mapping[str, Any]) -> Section:
    c, end = data["config"], data["live_log_at_end"]
    body = "\n\n".join([
        f"The ecommerce domain ({c['items']:,} items, {c['users']:,} users), {c['replicas']} replicas of "
        f"{c['replica_num_cpus']:g} CPU, an API key, one writer actor; `{c['wrk_version']}` with keep-alive, "
        f"{c['duration_s']} s per level. At the end the live log held {end['seq']:,} batches "
        f"({end['records_since_publish']:,} records) since the last publish.",
        _summary(data), "**Every level**", _throughput(data), "**Reads before, during and after a write stream**",
        _phases(data),
    ])
    return Section(
        title="Live writes",
        measures="Events posted over HTTP and acknowledged only once durable, at 1 to 32 concurrent writers, beside "
                 "raw DuckDB inserts of the same batches; how long until every replica serves them; and "
                 "`/recommend` latency while writes stream, beside the same reads without writes.",
        command="python -m benchmarks.live_events --json benchmarks/results/live_events.json",
        body=body,
        headline=_headline(data),
    )
