"""Evaluation reports: a self-contained HTML page with PNG figures (and report.json) for one or
more bundles beside popularity -- ``recengine evaluate MODEL --report DIR`` and
``recengine compare A B … --report DIR``."""

from __future__ import annotations

from pathlib import Path

from recengine.disk_space import disk_full_is_engine_error
from recengine.report import figures
from recengine.report.collect import K_MAX, ReportData, collect
from recengine.report.page import write_page

__all__ = ["K_MAX", "ReportData", "collect", "write_report"]


def write_report(data: ReportData, out: str | Path, command: str = "") -> Path:
    """Draw every figure and write index.html + report.json into ``out`` (created if missing).
    Returns the page's path."""
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    with disk_full_is_engine_error(directory, "the report there is incomplete"):
        tables = {run.label: run.table(tail_fraction=data.tail_fraction) for run in data.runs}
        drawn = {
            "curves": figures.curves(data, directory),
            "training": {run.label: figures.training_curve(run, directory) for run in data.bundles},
            "segments": figures.segments(data, directory),
            "deciles": figures.deciles(data, directory),
            "popularity_bias": figures.popularity_bias(data, directory),
        }
        return write_page(data, tables, drawn, directory, command)
