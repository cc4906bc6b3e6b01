"""``recommend_latency.json``: in-process ``Recommender.recommend`` beside a bare-numpy floor."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from benchmarks.tables.markdown import count, fixed, table, verdict
from benchmarks.tables.section import Headline, Section


def _retrieval(build: Mapping[str, Any]) -> str:
    r = build["retrieval"]
    shown = (f"ivf {r['nprobe']}/{r['nlist']} lists (recall {r['calibrated_recall']:.2f})" if r["kind"] == "ivf"
             else str(r["kind"]))
    return shown + (", users cached" if r.get("cached_users") else "")


def _cases(data: Mapping[str, Any]) -> Iterator[tuple[int, str, Mapping[str, Any], str, Mapping[str, Any]]]:
    """(items, model name, model figures, chain · path, chain figures), in catalogue-size order."""
    for items, models in sorted(data["sizes"].items(), key=lambda item: int(item[0])):
        for model, figures in models.items():
            for chain, case in figures["chains"].items():
                yield int(items), model, figures, chain, case


def _table(data: Mapping[str, Any]) -> str:
    rows = []
    for items, model, figures, chain, case in _cases(data):
        ours, floor = case["ours"], case["floor"]
        rows.append([count(items), model, chain, _retrieval(case["build"]), fixed(ours["p50_ms"]),
                     fixed(ours["p99_ms"]), fixed(ours["cpu_p50_ms"]),
                     f"{floor['p50_ms']:.2f} / {floor['p99_ms']:.2f}",
                     f"{case['ratio_p50']:.1f}× / {case['ratio_p99']:.1f}×", fixed(case["build"]["construct_s"]),
                     count(figures["peak_rss_mb"])])
    return table(["Items", "Model", "Rankers · path", "retrieval", "p50 (ms)", "p99 (ms)", "CPU/request (ms)",
                  "numpy floor p50 / p99 (ms)", "ratio p50 / p99", "construct (s)", "peak RSS (MiB)"], rows,
                 "rlllrrrrrrr")


def _target_p99(data: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """p99s at the target's catalogue size: (exact path, served path)."""
    exact: list[float] = []
    served: list[float] = []
    for items, _, _, chain, case in _cases(data):
        if items == data["target"]["items"]:
            (served if chain.endswith("served") else exact).append(case["ours"]["p99_ms"])
    return exact, served


def _target_line(data: Mapping[str, Any]) -> str:
    target = data["target"]
    exact, served = _target_p99(data)
    spans = "; ".join(f"{name} {min(v):.2f}–{max(v):.2f} ms" for name, v in (("exact", exact), ("served", served)) if v)
    return (f"Target p99 < {target['p99_ms']:g} ms at {count(target['items'])} items: "
            f"{verdict(data.get('target_met'))} (p99 {spans}).")


def _span(values: list[float], digits: int = 1) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if f"{low:.{digits}f}" == f"{high:.{digits}f}" else f"{low:.{digits}f}–{high:.{digits}f}"


def _largest_line(data: Mapping[str, Any]) -> str:
    """What the exact scan and the served path cost at the largest catalogue, and what the index costs to build."""
    largest = max(int(items) for items in data["sizes"])
    cases = [(chain, case) for items, _, _, chain, case in _cases(data) if items == largest]
    exact = [case for chain, case in cases if not chain.endswith("served")]
    served = [case for chain, case in cases if chain.endswith("served")]
    if not exact or not served:
        return ""
    ivf = [case["build"]["retrieval"] for case in served if case["build"]["retrieval"]["kind"] == "ivf"]
    recall = f" (recall@200 {_span([r['calibrated_recall'] for r in ivf], 2)} against the exact scan)" if ivf else ""
    return (f"At {count(largest)} items the exact scan costs {_span([c['ours']['p50_ms'] for c in exact])} ms p50, its "
            f"floor alone {_span([c['floor']['p50_ms'] for c in exact])} ms; the served path answers in "
            f"{_span([c['ours']['p50_ms'] for c in served])} ms p50{recall}, for "
            f"{_span([c['build']['construct_s'] for c in served], 0)} s of index build and calibration at load.")


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    target = data["target"]
    at_target = [(case, model) for items, model, _, chain, case in _cases(data)
                 if items == target["items"] and chain.endswith("served")]
    if not at_target:
        return ()
    case, model = max(at_target, key=lambda pair: pair[0]["ours"]["p99_ms"])
    return (Headline("recommend, in process", f"p99 at {count(target['items'])} items, served path (slowest case: "
                                                f"{model})", f"{case['ours']['p99_ms']:.2f} ms",
                     f"numpy matrix-vector floor {case['floor']['p99_ms']:.2f} ms",
                     f"< {target['p99_ms']:g} ms: {verdict(data.get('target_met'))}"),)


def render(data: Mapping[str, Any]) -> Section:
    s = data["settings"]
    chains = "; ".join(f"`{name}` = {', '.join(r['name'] for r in rankers)}" for name, rankers in s["chains"].items())
    body = "\n\n".join([
        f"k = {s['k']}, {s['users']:,} users with {s['history']}-item histories, {s['dim']}-d synthetic item "
        f"embeddings clustered by category as trained ones are, {s['requests']:,} requests per case "
        f"({s['big_requests']:,} at 1M items), best of {s['passes']} passes. Two paths per configuration: `exact` is "
        "how the CLI runs (exact scan, user encoder on each request), `served` how a Serve replica runs (users "
        "encoded once at load, retrieval on `auto`: IVF from 50k items, with the `nprobe` and recall@200 its "
        f"calibration reached). Ranker chains: {chains}. The floor is a bare NumPy matrix-vector product + "
        "argpartition over the same catalogue.",
        _table(data), " ".join(part for part in (_target_line(data), _largest_line(data)) if part),
    ])
    return Section(
        title="Recommend latency in process",
        measures="`Recommender.recommend` with reasons, on the CLI's path and a replica's, at 10k, 100k and 1M "
                 "items, beside the cost of a bare NumPy scan of the same catalogue in the same run.",
        command="python benchmarks/recommend_latency.py",
        body=body,
        headline=_headline(data),
    )
