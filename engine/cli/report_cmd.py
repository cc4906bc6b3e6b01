"""``recengine compare`` and the report behind ``recengine evaluate --report``: several bundles on
one split beside popularity, paired user by user, printed as tables and written as an HTML page
with figures."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recengine.cli.common import console, friendly_errors, json_option, print_json, store_option
from recengine.errors import ConfigError
from recengine.feature_store.protocols import PROTOCOLS
from recengine.metrics import RANKING_METRICS

if TYPE_CHECKING:
    from recengine.bundle import Bundle
    from recengine.report import ReportData

Command = TypeVar("Command", bound=Callable[..., Any])


def _segments(_: click.Context, __: click.Parameter, value: str) -> tuple[int, int]:
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 2 or not all(part.isdigit() for part in parts) or int(parts[0]) >= int(parts[1]):
        raise click.BadParameter(f"expected two increasing whole numbers like 10,50 (cold ≤ 10 < light ≤ 50 < "
                                 f"heavy), got {value!r}")
    return int(parts[0]), int(parts[1])


def metric_at_k(_: click.Context, __: click.Parameter, value: str) -> str:
    """A click callback: ``value`` is a ranking metric with its cut-off (``ndcg@10``), or a BadParameter."""
    name, _at, cut = value.partition("@")
    if name not in RANKING_METRICS or not cut.isdigit() or int(cut) < 1:
        raise click.BadParameter(f"expected one of {', '.join(RANKING_METRICS)} with @K, e.g. ndcg@10; got {value!r}")
    return value


def report_options(function: Command) -> Command:
    """The options every report takes (``evaluate --report`` and ``compare``)."""
    options = [
        click.option("--report", "report_dir", type=click.Path(file_okay=False),
                     help="Write an HTML report with figures (and report.json) into this directory."),
        click.option("--segments", default="10,50", show_default=True, callback=_segments,
                     help="User segment edges in training events: cold ≤ A < light ≤ B < heavy."),
        click.option("--tail", "tail_fraction", default=0.8, show_default=True,
                     type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     help="The long tail: this least popular share of the catalogue."),
        click.option("--paired-metric", default="ndcg@10", show_default=True, callback=metric_at_k,
                     help="Per-user metric of the paired test."),
        click.option("--sample-users", type=click.IntRange(min=2), default=None,
                     help="Rank a seeded sample of this many test users (the same for every bundle): "
                          "large stores."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@contextmanager
def _progress() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A rich progress bar per ranked run (on stderr, so --json output stays clean)."""
    from rich.console import Console

    columns = (TextColumn("ranking {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("users"),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        def start(label: str, users: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=users)
            return lambda n: bar.update(task, advance=n)

        yield start


def labelled_bundles(given: list[str], models_dir: str) -> list[tuple[str, Bundle]]:
    """Each given bundle (name, name/version or directory) loaded, labelled ``name/version``."""
    from recengine.bundle import load_bundle, resolve_bundle_label

    bundles: list[tuple[str, Bundle]] = []
    for item in given:
        bundle = load_bundle(resolve_bundle_label(models_dir, item))
        label = f"{bundle.name}/{bundle.version}"
        if any(label == seen for seen, _ in bundles):
            raise ConfigError(f"bundle {label} is given twice: compare different bundles")
        bundles.append((label, bundle))
    return bundles


def run_report(bundles: list[tuple[str, Bundle]], store_path: str, protocol: str | None, report_dir: str | None,
               segments: tuple[int, int], tail_fraction: float, paired_metric: str,
               sample_users: int | None = None) -> tuple[ReportData, Path | None]:
    """Rank, pair and (with ``report_dir``) write the report; returns the data and the page."""
    from recengine.report import collect, write_report

    with _progress() as start:
        data = collect(bundles, store_path, protocol=protocol, paired_metric=paired_metric, segment_edges=segments,
                       tail_fraction=tail_fraction, sample_users=sample_users, progress=start)
    if report_dir is None:
        return data, None
    command = "recengine " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    return data, write_report(data, report_dir, command)


def comparison_tables(data: ReportData) -> list[Table]:
    """The metric table (runs side by side) and the paired tests, for the terminal."""
    tables = {run.label: run.table(tail_fraction=data.tail_fraction) for run in data.runs}
    metrics = Table(title=f"{data.split['protocol']} split, seed {data.split['seed']}: "
                          f"{data.split['test_users']:,} test users")
    metrics.add_column("metric")
    for run in data.runs:
        metrics.add_column(run.label, justify="right")
    for metric in dict.fromkeys(key for table in tables.values() for key in table):
        metrics.add_row(metric, *(_cell(tables[run.label].get(metric), metric) for run in data.runs))
    paired = Table(title=f"Paired per-user {data.paired_metric} against {data.runs[0].label}")
    for column in ("run", "users", "mean", "baseline", "difference", "95% interval", "t-test p", "Wilcoxon p"):
        paired.add_column(column, justify="left" if column == "run" else "right")
    for row in data.paired:
        if "note" in row:
            paired.add_row(row["run"], str(row["users"]), row["note"], "", "", "", "", "")
            continue
        paired.add_row(row["run"], f"{row['users']:,}", f"{row['mean_a']:.4f}", f"{row['mean_b']:.4f}",
                       f"{row['mean_diff']:+.4f}", f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]",
                       f"{row['t_pvalue']:.3g}", f"{row['wilcoxon_pvalue']:.3g}")
    return [metrics, paired]


def _cell(value: float | None, metric: str) -> str:
    if value is None or value != value:  # NaN
        return "-"
    return f"{value:,.1f}" if metric.startswith("avg_popularity") else f"{value:.4f}"


def print_report(data: ReportData, page: Path | None, as_json: bool) -> None:
    """Tables (or JSON) for the terminal, and where the page was written."""
    if as_json:
        from recengine.report.page import report_json

        tables = {run.label: run.table(tail_fraction=data.tail_fraction) for run in data.runs}
        print_json({**report_json(data, tables, {}, ""), "page": str(page) if page else None})
        return
    for note in data.notes:
        console.print(f"[yellow]Note:[/] {note}")
    for table in comparison_tables(data):
        console.print(table)
    for run in data.bundles:
        console.print(f"{run.label}: {run.info['split_check']['verdict']}")
    if page is not None:
        console.print(f"Report written to [bold]{page}[/] (open it in a browser; it needs no network)")


@click.command()
@click.argument("bundles", nargs=-1, required=True)
@store_option
@click.option("--models", "models_dir", envvar="RECENGINE_MODELS", default="models", show_default=True,
              type=click.Path(file_okay=False), help="Directory of model bundles (or set RECENGINE_MODELS).")
@click.option("--protocol", type=click.Choice(PROTOCOLS), help="Default: the first bundle's.")
@report_options
@json_option
def compare(bundles: tuple[str, ...], store_path: str, models_dir: str, protocol: str | None,
            report_dir: str | None, segments: tuple[int, int], tail_fraction: float, paired_metric: str,
            sample_users: int | None, as_json: bool) -> None:
    """Compare bundles (name, name/version or directory) on the first one's split, beside popularity.

    Every bundle ranks the same test users; each is paired user by user with the first
    (t-test, Wilcoxon, bootstrap interval). With --report DIR, also an HTML page with figures.
    """
    with friendly_errors():
        if len(bundles) < 2:
            raise ConfigError("compare needs two or more bundles "
                              "(for one, use `recengine evaluate MODEL --report DIR`)")
        data, page = run_report(labelled_bundles(list(bundles), models_dir), store_path, protocol, report_dir,
                                segments, tail_fraction, paired_metric, sample_users)
    print_report(data, page, as_json)
