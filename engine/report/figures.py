"""The report's figures as PNG files (matplotlib's object API on the Agg canvas: no display, no
pyplot state). Each function draws one figure from a :class:`ReportData` and returns the file
name it wrote under ``out``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from recengine.report.collect import ReportData
from recengine.report.evaluation import CURVE_METRICS, RankedRun

__all__ = ["curves", "deciles", "popularity_bias", "segments", "slug", "training_curve"]

DPI = 110
TITLES = {"recall": "Recall@K", "ndcg": "NDCG@K", "hit": "Hit@K", "precision": "Precision@K", "map": "MAP@K",
          "mrr": "MRR@K"}


def slug(label: str) -> str:
    """A file-name-safe form of a run's label ("news/4" → "news-4")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.") or "run"


def _style(run: RankedRun) -> dict[str, object]:
    return {"linestyle": "--", "color": "0.45"} if run.kind == "baseline" else {}


def _save(figure: Figure, out: Path, name: str) -> str:
    figure.savefig(out / name, dpi=DPI, bbox_inches="tight")
    return name


def curves(data: ReportData, out: Path) -> str:
    """Every curve metric at K = 1 … K for every run, one panel per metric."""
    figure = Figure(figsize=(12, 7), layout="constrained")
    axes = figure.subplots(2, 3)
    series = {run.label: run.curves() for run in data.runs}
    for axis, name in zip(axes.ravel(), CURVE_METRICS):
        for run in data.runs:
            values = series[run.label][name]
            axis.plot(np.arange(1, values.size + 1), values, label=run.label, **_style(run))
        axis.set_title(TITLES[name])
        axis.set_xlabel("K")
        axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    figure.suptitle(f"Metric@K on the {data.split['protocol']} split ({data.split['test_users']:,} test users)")
    return _save(figure, out, "curves.png")


def training_curve(run: RankedRun, out: Path) -> str:
    """Training loss and validation NDCG@10 per epoch, the best epoch marked."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    loss_axis = figure.subplots()
    epochs = [int(h["epoch"]) for h in run.history]
    loss_axis.plot(epochs, [h.get("loss", np.nan) for h in run.history], "o-", color="tab:blue", label="loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    valid_axis = loss_axis.twinx()
    valid = [h.get("valid_ndcg@10", np.nan) for h in run.history]
    valid_axis.plot(epochs, valid, "s-", color="tab:orange", label="validation NDCG@10")
    valid_axis.set_ylabel("validation NDCG@10", color="tab:orange")
    if run.best_epoch is not None and run.best_epoch in epochs:
        best = epochs.index(run.best_epoch)
        loss_axis.axvline(run.best_epoch, color="0.5", linestyle=":")
        valid_axis.plot([run.best_epoch], [valid[best]], "*", color="tab:red", markersize=14,
                        label=f"best epoch {run.best_epoch}")
    valid_axis.legend(loc="lower right", fontsize="small")
    loss_axis.set_title(f"Training of {run.label}")
    if epochs:
        loss_axis.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(len(epochs) // 10, 1)])
    return _save(figure, out, f"training-{slug(run.label)}.png")


def segments(data: ReportData, out: Path, k: int = 10) -> str:
    """NDCG@k of cold / light / heavy users, grouped bars per run."""
    figure = Figure(figsize=(8, 4), layout="constrained")
    axis = figure.subplots()
    rows = {run.label: run.segments(k, data.segment_edges) for run in data.runs}
    labels = [row["label"] for row in rows[data.runs[0].label]]
    counts = [row["users"] for row in rows[data.runs[0].label]]
    width = 0.8 / len(data.runs)
    x = np.arange(len(labels))
    for offset, run in enumerate(data.runs):
        key = f"ndcg@{min(k, run.k_max)}"
        values = [row.get(key, 0.0) for row in rows[run.label]]
        axis.bar(x + offset * width, values, width, label=run.label,
                 color="0.6" if run.kind == "baseline" else None)
    axis.set_xticks(x + width * (len(data.runs) - 1) / 2, [f"{label}\n{n:,} users" for label, n in zip(labels, counts)])
    axis.set_ylabel(f"NDCG@{k}")
    axis.set_title("Accuracy by user history length (training events)")
    axis.legend(fontsize="small")
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, out, "segments.png")


def deciles(data: ReportData, out: Path, k: int = 10) -> str:
    """Per item-popularity decile: recall@k of its held-out items, and its share of the slots."""
    figure = Figure(figsize=(12, 4), layout="constrained")
    recall_axis, share_axis = figure.subplots(1, 2)
    width = 0.8 / len(data.runs)
    x = np.arange(1, 11)
    for offset, run in enumerate(data.runs):
        rows = run.deciles(k)
        key = f"recall@{min(k, run.k_max)}"
        color = "0.6" if run.kind == "baseline" else None
        recall_axis.bar(x + offset * width, [np.nan_to_num(r[key]) for r in rows], width, label=run.label, color=color)
        share_axis.bar(x + offset * width, [np.nan_to_num(r["slot_share"]) for r in rows], width, label=run.label,
                       color=color)
    positives = data.runs[0].deciles(k)
    share_axis.plot(x + width * (len(data.runs) - 1) / 2, [np.nan_to_num(r["positive_share"]) for r in positives],
                    "k.--", label="share of held-out items")
    centre = x + width * (len(data.runs) - 1) / 2
    recall_axis.set_xticks(centre, [f"{d}\n{int(r['positives']):,}" for d, r in zip(x, positives)])
    share_axis.set_xticks(centre, [str(d) for d in x])
    for axis in (recall_axis, share_axis):
        axis.set_xlabel("item popularity decile (1 = least popular tenth, 10 = most popular)")
        axis.grid(axis="y", alpha=0.3)
    recall_axis.set_title(f"Recall@{k} of held-out items by popularity decile (under it: held-out items)")
    share_axis.set_title(f"Share of top-{k} slots by popularity decile")
    share_axis.legend(fontsize="small")
    return _save(figure, out, "deciles.png")


def popularity_bias(data: ReportData, out: Path, k: int = 10) -> str:
    """How often each item is recommended (top-k, over the test users) against its training popularity."""
    figure = Figure(figsize=(7, 5), layout="constrained")
    axis = figure.subplots()
    for run in data.runs:
        shown = run.recommended(k)[1:]
        popularity = run.catalogue.popularity[1:]
        keep = shown > 0
        baseline = run.kind == "baseline"
        axis.scatter(popularity[keep] + 1, shown[keep], s=9, alpha=0.5, marker="x" if baseline else "o",
                     color="0.3" if baseline else None, label=f"{run.label} ({int(keep.sum()):,} items)")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("item popularity: training events + 1 (log)")
    axis.set_ylabel(f"users whose top {k} holds the item (log)")
    axis.set_title("Popularity bias: recommendation frequency against popularity")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    return _save(figure, out, "popularity_bias.png")
