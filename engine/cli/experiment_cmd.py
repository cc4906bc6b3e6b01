"""``recengine experiment``: start, watch and stop online experiments of a project's domain.

An experiment is recorded in the domain's store (through its writer while it is served);
the serving replicas follow the store, so a start or stop reaches every replica within a
second, and one started while nothing serves begins when the domain is served.
"""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from recengine.cli.common import console, friendly_errors, json_option, print_json
from recengine.cli.serve_cmd import project_option


@click.group()
def experiment() -> None:
    """A/B tests and interleaving of two bundles on live traffic."""


def _arms(values: tuple[str, ...]) -> list[tuple[str, str]]:
    arms = []
    for value in values:
        name, sep, bundle = value.partition("=")
        if not sep or not name or not bundle:
            raise click.BadParameter(f"{value!r}: expected NAME=BUNDLE, e.g. control=news/3", param_hint="--arm")
        arms.append((name.strip(), bundle.strip()))
    return arms


def _split(value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected shares such as 50,50", param_hint="--split") from None


@experiment.command()
@project_option
@click.option("--domain", required=True, help="The domain to experiment on.")
@click.option("--arm", "arms", multiple=True, required=True,
              help="NAME=BUNDLE, twice or more: the first is the control, e.g. --arm control=news/3 "
                   "--arm candidate=news/4 (a bundle is <name>/<version>, a name, or a directory).")
@click.option("--split", default=None, help="Share of users per arm, e.g. 50,50 (default: even; A/B only).")
@click.option("--mode", type=click.Choice(["ab", "interleave"]), default="ab", show_default=True,
              help="ab: each user sees one arm; interleave: every list is drafted from both (team draft).")
@click.option("--min-effect", type=float, default=0.05, show_default=True,
              help="Smallest relative CTR lift the planned sample size should detect (0.05 = +5%).")
@json_option
def start(project: str, domain: str, arms: tuple[str, ...], split: str | None, mode: str, min_effect: float,
          as_json: bool) -> None:
    """Start an experiment: the replicas load every arm and route each user to one."""
    with friendly_errors():
        from recengine.online.control import resolve_arms
        from recengine.online.experiments import new_experiment
        from recengine.project import domain_paths

        paths = domain_paths(project, domain)
        spec = resolve_arms(new_experiment(domain, _arms(arms), _split(split), mode, min_effect), paths["models"])
        recorded = on_store(paths["store"], "record_experiment", spec.model_dump())
    if as_json:
        print_json(recorded)
        return
    shares = ", ".join(f"{a['name']}={a['bundle']} ({a['weight']:.0%})" for a in recorded["arms"])
    console.print(f"Started experiment [bold]{recorded['id']}[/] on {domain} ({mode}): {shares}")
    console.print(f"Watch it: recengine experiment status --domain {domain} --project {project}")


@experiment.command()
@project_option
@click.option("--domain", required=True)
@click.option("--id", "experiment_id", default=None, help="An earlier experiment (default: the running, else latest).")
@click.option("--k", type=click.IntRange(1, 100), default=10, show_default=True,
              help="CTR@k: clicks within the top k count.")
@click.option("--window", "window_hours", type=click.FloatRange(min=0, min_open=True), default=24.0,
              show_default=True, help="Attribution window in hours: an event without a request_id counts for "
                                      "the latest impression of its item for its user at most this long before.")
@json_option
def status(project: str, domain: str, experiment_id: str | None, k: int, window_hours: float, as_json: bool) -> None:
    """Per-arm impressions, clicks and CTR with 95% intervals, the test, and whether the
    planned sample is reached, from the logged data."""
    with friendly_errors():
        from recengine.project import domain_paths

        report = on_store(domain_paths(project, domain)["store"], "experiment_report", domain, experiment_id, k,
                           window_hours)
    if as_json:
        print_json(report)
        return
    _print_report(report, k)


@experiment.command()
@project_option
@click.option("--domain", required=True)
@click.option("--promote", default=None, help="The arm to make the domain's model (default: none; the replicas "
                                              "go back to the bundle they were deployed with).")
@json_option
def stop(project: str, domain: str, promote: str | None, as_json: bool) -> None:
    """Stop the running experiment; with --promote, its winner serves from now on."""
    with friendly_errors():
        from recengine.project import domain_paths

        stopped = on_store(domain_paths(project, domain)["store"], "stop_experiment", domain, promote)
    if as_json:
        print_json(stopped)
        return
    what = (f"; {promote} ({_bundle_of(stopped, promote)}) is promoted: the replicas serving {domain} switch to it"
            if promote else "")
    console.print(f"Stopped experiment [bold]{stopped['id']}[/]{what}")


def _bundle_of(spec: dict[str, Any], arm: str) -> str:
    return next(str(a["bundle"]) for a in spec["arms"] if a["name"] == arm)


def on_store(path: Any, operation: str, *args: Any) -> Any:
    """Run an experiment operation on the store: through its writer while it is served."""
    from recengine.online import control
    from recengine.online.store_reports import experiment_status
    from recengine.store_access import RemoteStore, writable_store

    with writable_store(path) as store:
        if isinstance(store, RemoteStore):
            return store.call(operation, *args)
        if operation == "experiment_report":
            return experiment_status(store, *args).model_dump()
        return getattr(control, operation)(store, *args)


def _print_report(report: dict[str, Any], k: int) -> None:
    spec = report["experiment"]
    console.print(f"[bold]{spec['id']}[/] ({spec['mode']}, {report['status']}, since {spec['started_at'][:19]})")
    table = Table(show_edge=False)
    for column in ("arm", "model", "users", "requests", "clicks", f"CTR@{k} (95%)", "conv.", "MRR", "coverage"):
        table.add_column(column, justify="left" if column in ("arm", "model") else "right")
    for arm in report["arms"]:
        interval = "" if arm["ctr_low"] is None else f" ({arm['ctr_low']:.3f}–{arm['ctr_high']:.3f})"
        table.add_row(escape(arm["name"]), escape(str(arm["model"])), str(arm["users"]), str(arm["requests"]),
                      str(arm["clicks"]), _num(arm["ctr"]) + interval, _num(arm["conversion_rate"]),
                      _num(arm["mrr"]), _num(arm["coverage"]))
    console.print(table)
    if report.get("ab"):
        test = report["ab"]
        console.print(f"{test['candidate']} − {test['control']}: {_num(test['difference'], '+.4f')} "
                      f"(95% {_num(test['low'], '+.4f')} to {_num(test['high'], '+.4f')}), "
                      f"p = {_num(test['p_value'], '.3g')}; planned {test['planned_requests_per_arm'] or '—'} "
                      f"requests per arm")
    if report.get("interleaving"):
        test = report["interleaving"]
        console.print(f"wins {test['wins']}, ties {test['ties']}, credit {_num(test['credit'], '+.4f')}; users "
                      f"preferring {test['user_preference']}, sign test p = {_num(test['p_value'], '.3g')}")
    console.print(f"[bold]{escape(report['verdict'])}[/]")


def _num(value: float | None, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)
