"""The report's HTML page (a Jinja2 template, autoescaped) and its machine-readable twin, report.json.

The page references only the PNGs written beside it and carries its styles inline: it opens
offline, from a file, with nothing fetched.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from recengine.report.collect import ReportData

__all__ = ["DEFINITIONS", "report_json", "write_page"]

#: One line per metric, shown on the page and in docs/evaluation.md.
DEFINITIONS: dict[str, str] = {
    "recall@K": "held-out items found in the top K ÷ the user's held-out items.",
    "ndcg@K": "DCG of the hits (1/log2(rank+1)) ÷ the best DCG a list of K could reach.",
    "hit@K": "1 if any held-out item is in the top K, else 0.",
    "mrr@K": "1 ÷ the rank of the first held-out item in the top K (0 if none).",
    "precision@K": "held-out items found in the top K ÷ K.",
    "map@K": "the mean of precision@r over the ranks r ≤ K of the hits, ÷ min(held-out items, K).",
    "gauc": "each user's AUC over the full ranking (ties half), averaged weighting users by their held-out items.",
    "coverage@K": "share of the catalogue's items shown in at least one user's top K.",
    "gini@K": "Gini index of how often items are shown (0: all equally, → 1: a few take every slot).",
    "entropy@K": "Shannon entropy (nats) of the distribution of top-K slots over items.",
    "tail_percentage@K": "mean share of a user's top K from the long tail (the least popular 80% of items).",
    "avg_popularity@K": "mean training events of the items in a user's top K, averaged over users.",
    "novelty@K": "mean self-information −log2((n_i + 1)/(users + 1)) of the recommended items.",
}
LOWER_IS_BETTER = ("gini@", "avg_popularity@")


def _definition(metric: str) -> str:
    base, _, cut = metric.partition("@")
    return DEFINITIONS.get(f"{base}@K" if cut else base, "")


def _number(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.1f}" if metric.startswith("avg_popularity") else f"{value:.4f}"


def _metric_rows(tables: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    labels = list(tables)
    metrics = list(dict.fromkeys(key for table in tables.values() for key in table))
    rows = []
    for metric in metrics:
        values = [tables[label].get(metric) for label in labels]
        finite = [v for v in values if v is not None and not math.isnan(v)]
        best = (min(finite) if metric.startswith(LOWER_IS_BETTER) else max(finite)) if finite else None
        rows.append({"name": metric, "definition": _definition(metric),
                     "cells": [{"text": _number(v, metric), "best": v is not None and v == best and len(finite) > 1}
                               for v in values]})
    return rows


def _segment_rows(data: ReportData) -> list[dict[str, Any]]:
    per_run = [run.segments(10, data.segment_edges) for run in data.runs]
    rows = []
    for index, first in enumerate(per_run[0]):
        cells = []
        for run_rows in per_run:
            row = run_rows[index]
            cells += [_number(row.get("ndcg@10"), "ndcg"), _number(row.get("recall@10"), "recall")]
        rows.append({"label": first["label"], "users": first["users"], "cells": cells})
    return rows


def _package_version() -> str:
    try:
        return version("recengine")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "(source)"


def report_json(data: ReportData, tables: dict[str, dict[str, float]], figures: dict[str, Any],
                command: str) -> dict[str, Any]:
    """Every number the page shows, for scripts (NaN written as null)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {key: clean(v) for key, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean({
        "command": command, "store": data.store, "split": data.split, "paired_metric": data.paired_metric,
        "segment_edges": list(data.segment_edges), "tail_fraction": data.tail_fraction, "notes": data.notes,
        "runs": [{"label": run.label, "kind": run.kind, "info": run.info, "metrics": tables[run.label],
                  "curves": {name: values.tolist() for name, values in run.curves().items()},
                  "segments": run.segments(10, data.segment_edges), "deciles": run.deciles(10)}
                 for run in data.runs],
        "paired": data.paired, "figures": figures,
    })


def write_page(data: ReportData, tables: dict[str, dict[str, float]], figures: dict[str, Any], out: Path,
               command: str) -> Path:
    """Render index.html into ``out`` and return its path."""
    environment = Environment(loader=FileSystemLoader(Path(__file__).parent),
                              autoescape=select_autoescape(["j2"]), undefined=StrictUndefined)
    template = environment.get_template("report.html.j2")
    labels = ", ".join(run.label for run in data.bundles)
    html = template.render(
        title=f"Evaluation report: {labels}", generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=_package_version(), command=command, data=data, figures=figures,
        metric_rows=_metric_rows(tables), segment_rows=_segment_rows(data),
        definitions=[(name, text) for name, text in DEFINITIONS.items()],
    )
    path = out / "index.html"
    path.write_text(html, encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report_json(data, tables, figures, command), indent=1) + "\n")
    return path
