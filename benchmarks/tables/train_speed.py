"""``train_speed.json``: local training beside Ray Train with one and two workers, and (``--catalogue``)
the softmax recipe: per-row against shared negatives at 25k items, and the options on ml-100k."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import count, fixed, load_average, mark, table, times, verdict
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


def _setting(run: Mapping[str, Any]) -> str:
    """The recipe fields a run sets away from the defaults, as ``key=value``."""
    defaults = {"negatives": 0, "sampling": "per_row", "in_batch_negatives": False, "sampler": "uniform",
                "logq_correction": True, "normalize": False, "temperature": None, "softmax_chunk": None,
                "trim_padding": True, "length_buckets": 0}
    changed = [f"{k}={v}" for k, v in run["settings"].items() if k in defaults and v != defaults[k]]
    return ", ".join(changed) or "defaults"


def _recipe_table(part: Mapping[str, Any], unit: str, with_target: bool) -> str:
    rows = []
    for r in part["runs"]:
        met = r.get("target_met") if with_target else None
        rows.append([r["label"], _setting(r), count(r["samples_per_second_median"]),
                     f"{times(r['speedup'])} {mark(met)}".strip(), f"{r['valid_ndcg@10']:.4f}",
                     f"{r['valid_ndcg@10_vs_baseline']:+.4f}", f"{r['test_ndcg@10']:.4f}",
                     " ".join(f"{v:.3f}" for v in r["valid_ndcg@10_by_epoch"]), fixed(r.get("temperature"), 3)])
    return table(["run", "settings", f"{unit}/s", "× first row", "valid NDCG@10", "Δ valid", "test NDCG@10",
                  "valid NDCG@10 by epoch", "τ (learnt)"], rows, "llrrrrrlr")


def _recipe_body(data: Mapping[str, Any]) -> list[str]:
    parts = []
    if "catalogue" in data:
        c = data["catalogue"]
        parts += [
            f"**Sampled softmax at scale.** {c['dataset']}, {c['pipeline']}; {c['epochs']} epochs per run, "
            f"positions/s the median epoch with the first dropped, validation NDCG@10 after the same epochs; "
            f"{c['torch_threads']} torch threads, load average {load_average(c['load_average_before'])} before and "
            f"{load_average(c['load_average_after'])} after; run {c['created']}, {c['total_seconds']:.0f} s. "
            f"Target: {c['target']}.",
            _recipe_table(c, "positions", True),
        ]
        if c.get("note"):
            parts.append(str(c["note"]))
    if "recipes" in data:
        r = data["recipes"]
        parts += [
            f"**The softmax options on {r['dataset']}.** {r['pipeline']}; samples/s are training positions per "
            f"second (median epoch, first dropped); load average {load_average(r['load_average_before'])} before "
            f"and {load_average(r['load_average_after'])} after; run {r['created']}, {r['total_seconds']:.0f} s.",
            _recipe_table(r, "samples", False),
        ]
    return parts


def _recipe_headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    if "catalogue" not in data:
        return ()
    c = data["catalogue"]
    base, others = c["runs"][0], c["runs"][1:]
    if not others:
        return ()
    best = max(others, key=lambda r: r["valid_ndcg@10"])
    met = bool(best.get("target_met"))
    return (Headline(f"sampled softmax ({c['size']['items']:,} items)",
                     f"{best['label']}: training positions/s, valid NDCG@10",
                     f"{count(best['samples_per_second_median'])} ({times(best['speedup'])}), "
                     f"{best['valid_ndcg@10']:.4f}",
                     f"{base['label']}: {count(base['samples_per_second_median'])}, {base['valid_ndcg@10']:.4f}",
                     f"{c['target']}: {verdict(met)}"),)


def render(data: Mapping[str, Any]) -> Section:
    body = "\n\n".join([
        f"{data['dataset']}, {data['epochs']} epochs, the median epoch with the first dropped; the same config and "
        f"data for every row; {data['total_seconds']:.0f} s in all.",
        _table(data), str(data["note"]), *_recipe_body(data),
    ])
    return Section(
        title="Training speed: local and Ray Train",
        measures="Epoch time and training throughput of two pipelines trained locally (torch's threads, and one "
                 "thread) and on Ray Train with one and two workers, same data and config, with each run's "
                 "start-up overhead and the quality it reached; and the softmax recipe: today's per-row sampled "
                 "negatives beside shared and in-batch ones on a 25k-item catalogue (positions/s, validation "
                 "NDCG@10), and every softmax option beside the full softmax on ml-100k.",
        command="python benchmarks/train_speed.py; python benchmarks/train_speed.py --catalogue",
        body=body,
        # the Ray row has no target and stays in the section; the README's twelve rows keep the recipe's
        headline=_recipe_headline(data) or _headline(data),
    )
