"""``train_speed.json``: local training beside Ray Train with one and two workers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import count, fixed, table
from benchmarks.tables.section import Headline, Section


def _backend(run: Mapping[str, Any]) -> str:
    if run["backend"] == "local-1t":
        return "local 1 thread"
    if run["backend"] == "ray":
        return f"ray ×{run['workers']}"
    return str(run["backend"])


def _table(data: Mapping[str, Any]) -> str:
    rows = []
    for r in data["runs"]:
        local = r["backend"].startswith("local")
        rows.append([r["pipeline"], _backend(r), fixed(r["epoch_seconds_median"]),
                     count(r["samples_per_second_median"]),
                     fixed(r["ratio_to_local"]), fixed(r["ratio_to_local_1_thread"]), fixed(r["overhead_seconds"], 1),
                     "—" if local else f"{r['extra_overhead_vs_local_seconds']:+.1f}",
                     f"{r['valid_ndcg@10']:.4f}", f"{r['test_ndcg@10']:.4f}"])
    return table(["pipeline", "backend", "epoch s", "samples/s", "× local", "× local 1t", "overhead s",
                  "extra vs local s", "valid NDCG@10", "test NDCG@10"], rows, "llrrrrrrrr")


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    """The widest Ray run that gained most over one local thread, beside that local run."""
    ray_runs = [r for r in data["runs"] if r["backend"] == "ray"]
    if not ray_runs:
        return ()
    best = max(ray_runs, key=lambda r: (r["workers"], r["ratio_to_local_1_thread"]))
    base = next(r for r in data["runs"] if r["pipeline"] == best["pipeline"] and r["backend"] == "local-1t")
    return (Headline("training speed (ml-100k)", f"{best['pipeline']}: training samples/s on Ray Train "
                     f"×{best['workers']}", f"{count(best['samples_per_second_median'])} "
                     f"({fixed(best['ratio_to_local_1_thread'])}×)",
                     f"local, 1 thread: {count(base['samples_per_second_median'])}", "—"),)


def render(data: Mapping[str, Any]) -> Section:
    body = "\n\n".join([
        f"{data['dataset']}, {data['epochs']} epochs, the median epoch with the first dropped; the same config and "
        f"data for every row; {data['total_seconds']:.0f} s in all.",
        _table(data), str(data["note"]),
    ])
    return Section(
        title="Training speed: local and Ray Train",
        measures="Epoch time and training throughput of two pipelines trained locally (torch's threads, and one "
                 "thread) and on Ray Train with one and two workers, same data and config, with each run's "
                 "start-up overhead and the quality it reached.",
        command="python benchmarks/train_speed.py",
        body=body,
        headline=_headline(data),
    )
