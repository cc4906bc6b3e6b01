"""``serve_load.json``: ``wrk`` load on ``/ecommerce/recommend`` beside a no-op deployment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import table, times, verdict
from benchmarks.tables.section import Headline, Section


def _statuses(side: Mapping[str, Any]) -> str:
    return ", ".join(f"{code}: {n:,}" for code, n in sorted(side["statuses"].items()))


def _levels(data: Mapping[str, Any]) -> str:
    rows = []
    for level in data["levels"]:
        noop, ours = level["noop"], level["ours"]
        rows.append([level["connections"], f"{noop['rps']:.0f}", f"{noop['p50_ms']:.1f} ms", f"{noop['p99_ms']:.1f} ms",
                     f"{ours['rps_2xx']:.0f}", f"{ours['p50_ms']:.1f} ms", f"{ours['p99_ms']:.1f} ms",
                     times(level["p99_ratio"]), f"{ours['non_2xx']} ({ours['5xx']})", _statuses(ours)])
    return table(["connections", "no-op req/s", "no-op p50", "no-op p99", "ours 2xx/s", "ours p50", "ours p99",
                  "p99 ratio", "ours non-2xx (5xx)", "ours statuses"], rows, "rrrrrrrrrl")


def _targets(data: Mapping[str, Any]) -> str:
    t = data["targets"]
    return (f"Targets: zero 5xx at every level {verdict(t['zero_5xx_all_levels'])}; p99 at {t['p99_ratio_level']} "
            f"connections {times(t['p99_ratio_at_32'])} the no-op's (≤ {t['p99_ratio_max']:g}×) "
            f"{verdict(t['p99_met_at_32'])}.")


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    t = data["targets"]
    level = next(x for x in data["levels"] if x["connections"] == t["p99_ratio_level"])
    fives = sum(x["ours"]["5xx"] for x in data["levels"])
    most = max(x["connections"] for x in data["levels"])
    return (Headline("serving under load (wrk)", f"`/recommend` p99 at {level['connections']} connections; "
                                                 f"5xx at 1–{most}",
                     f"{level['ours']['p99_ms']:.1f} ms; {fives} 5xx",
                     f"no-op Serve deployment {level['noop']['p99_ms']:.1f} ms ({times(level['p99_ratio'])})",
                     f"≤ {t['p99_ratio_max']:g}×, zero 5xx: "
                     f"{verdict(t['p99_met_at_32'] and t['zero_5xx_all_levels'])}"),)


def render(data: Mapping[str, Any]) -> Section:
    c = data["config"]
    body = "\n\n".join([
        f"`{c['wrk_version']}` with keep-alive against `/ecommerce/recommend` at {c['items']:,} items, "
        f"{c['rotated_users']} real user ids rotated, {c['duration_s']} s per level and side after {c['warmup_s']} s "
        f"of warm-up, k = {c['k']}, one {c['replica_num_cpus']:g}-CPU replica; the no-op deployment has the same "
        "request/response models, the same logging and the shipped proxy options (5 s request timeout).",
        _levels(data), _targets(data),
    ])
    return Section(
        title="Serving under load (wrk)",
        measures="HTTP load from a tool nobody here wrote: throughput, latency and status codes of the served "
                 "domain at 1 to 128 keep-alive connections, beside a no-op Serve deployment in the same run.",
        command="python -m benchmarks.serve_load",
        body=body,
        headline=_headline(data),
    )
