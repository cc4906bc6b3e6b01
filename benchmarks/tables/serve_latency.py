"""``serve_latency.json``: ``POST /ecommerce/recommend`` over Ray Serve beside a no-op deployment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import fixed, mark, table, times, verdict
from benchmarks.tables.section import Headline, Section


def _levels(data: Mapping[str, Any]) -> str:
    t = data["targets"]
    rows = []
    for level in data["levels"]:
        noop, ours = level["noop"], level["ours"]
        rows.append([level["clients"], f"{noop['p50_ms']:.1f} / {noop['p99_ms']:.1f}", f"{noop['qps']:.0f}",
                     f"{ours['p50_ms']:.1f} / {ours['p99_ms']:.1f}", f"{ours['qps']:.0f}",
                     f"{times(level['p50_ratio'])} {mark(level['p50_ok'])}",
                     f"{times(level['p99_ratio'])} {mark(level['p99_ok'])}", ours["non_2xx"]])
    return table(["clients", "no-op p50 / p99 ms", "no-op QPS", "ours p50 / p99 ms", "ours QPS",
                  f"p50 ratio (≤ {t['p50_ratio_max']:g}×)", f"p99 ratio (≤ {t['p99_ratio_max']:g}×)", "non-2xx"],
                 rows, "rrrrrrrr")


def _in_process(data: Mapping[str, Any]) -> str:
    rows = []
    for name, path in data["in_process"].items():
        if not isinstance(path, Mapping):
            continue
        r = path["retrieval"]
        retrieval = (f"ivf {r['nprobe']}/{r['nlist']} lists (recall {r['calibrated_recall']:.3f})"
                     if r["kind"] == "ivf" else r["kind"])
        rows.append([name.replace("_", ", "), retrieval, f"{r.get('cached_users', 0):,}", fixed(path["load_s"]),
                     f"{path['single_p50_ms']:.2f} / {path['single_p99_ms']:.2f}",
                     f"{path['batch16_p50_ms']:.2f} / {path['batch16_p99_ms']:.2f}",
                     fixed(path["batch16_per_request_ms"])])
    return table(["path", "retrieval", "cached users", "load s", "1 request p50 / p99 ms", "batch of 16 p50 / p99 ms",
                  "ms per request in a batch"], rows, "llrrrrr")


def _targets(data: Mapping[str, Any]) -> str:
    t = data["targets"]
    return (f"Targets: p50 within {t['p50_ratio_max']:g}× of the no-op at every level "
            f"{verdict(t['p50_met_all_levels'])}; p99 within {t['p99_ratio_max']:g}× "
            f"{verdict(t['p99_met_all_levels'])}; zero 5xx at 32 clients {verdict(t['zero_5xx_at_32'])}.")


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    level = data["levels"][0]
    return (Headline("serving over HTTP", f"`/recommend` p50 at {level['clients']} client, 100k items",
                     f"{level['ours']['p50_ms']:.1f} ms", f"no-op Serve deployment {level['noop']['p50_ms']:.1f} ms "
                     f"({times(level['p50_ratio'])})",
                     f"≤ {data['targets']['p50_ratio_max']:g}× at every level: "
                     f"{verdict(data['targets']['p50_met_all_levels'])}"),)


def render(data: Mapping[str, Any]) -> Section:
    c = data["config"]
    body = "\n\n".join([
        f"{c['items']:,} items, {c['users']:,} users, k = {c['k']}, the ecommerce preset (transformer user tower, "
        "ranker chain with purchase exclusion and category diversity, reasons); the no-op has the same FastAPI "
        f"request/response models, replica CPUs ({c['replica_num_cpus']:g}) and `max_ongoing_requests` "
        f"({c['max_ongoing_requests']}); ABBA rounds, {c['rounds']} × {c['requests_per_level_side_round']} requests a "
        "side and level, keep-alive clients on the same two cores.",
        _levels(data), _targets(data),
        f"**In process, the same bundle** ({data['in_process']['torch_threads']} torch thread), to split the HTTP "
        "figures into model cost and serving cost:", _in_process(data),
    ])
    return Section(
        title="Serving latency over HTTP",
        measures="`POST /ecommerce/recommend` through Ray Serve on a 100,000-item catalogue against a no-op Serve "
                 "deployment with the same request/response models, in the same run, at 1, 8 and 32 clients.",
        command="python benchmarks/serve_latency.py",
        body=body,
        headline=_headline(data),
    )
