"""``recengine retrain``: train on the live store, compare with the serving model, then act.

The new bundle is trained with the serving bundle's pipeline on the store as it is now (live
events included), and both are ranked on the new bundle's test split, user by user
(``recengine.compare``). Then, by ``--then``:

- ``deploy`` (default): the new bundle serves (hot swap) only if its mean NDCG@10 is at least
  the serving one's; otherwise it is refused;
- ``experiment``: an A/B experiment starts, serving (control) against new (candidate), unless
  the new one is significantly worse (paired t-test, p < 0.05): the users decide;
- ``none``: the figures only; the new bundle is kept.

A refused bundle is moved aside to ``models/<name>/refused-<version>`` (no longer a version
anything serves by default) and the command exits 1 with the figures, so a scheduled retrain
never silently replaces a better model with a worse one.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from recengine.cli.common import console, friendly_errors, json_option, print_json
from recengine.cli.serve_cmd import project_option

if TYPE_CHECKING:
    from recengine.compare import Comparison


@click.command()
@project_option
@click.option("--domain", required=True, help="The domain to retrain.")
@click.option("--then", "then", type=click.Choice(["deploy", "experiment", "none"]), default="deploy",
              show_default=True, help="What to do with a new bundle that passes the comparison.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Maximum epochs (default: as the "
                                                                           "serving bundle was trained).")
@json_option
def retrain(project: str, domain: str, then: str, epochs: int | None, as_json: bool) -> None:
    """Train on the live store, compare with the serving bundle (paired per-user test), then
    deploy it, start an experiment with it, or refuse it with the figures."""
    with friendly_errors():
        outcome = run_retrain(project, domain, then, epochs, progress=not as_json)
    if as_json:
        print_json(outcome)
    else:
        _print(outcome)
    if outcome["decision"] == "refused":
        raise SystemExit(1)


def run_retrain(project: str | Path, domain: str, then: str, epochs: int | None, progress: bool) -> dict[str, Any]:
    from recengine.bundle import load_bundle
    from recengine.compare import compare_bundles
    from recengine.pipeline import train_pipeline
    from recengine.project import resolve_targets

    target = resolve_targets(project, [domain])[0]
    serving_path, served = serving_bundle(project, domain, target.bundle)
    serving = load_bundle(serving_path)
    config = serving.config.with_overrides({"train.epochs": epochs}) if epochs else serving.config
    trained = train_pipeline(target.store, config, serving_path.parent.parent, progress=progress)
    new = load_bundle(trained.bundle_path)
    comparison = compare_bundles(new, serving, target.store)
    outcome: dict[str, Any] = {"domain": domain, "serving": _label(serving_path), "new": _label(trained.bundle_path),
                               "served": served, "then": then, "comparison": comparison.to_dict()}
    decided = decide(comparison, then)
    if decided == "kept":
        return {**outcome, "decision": "kept"}
    if decided == "refused":
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        refused = trained.bundle_path.with_name(f"refused-{trained.bundle_path.name}-{stamp}")
        shutil.move(trained.bundle_path, refused)
        return {**outcome, "decision": "refused", "moved_to": str(refused)}
    if then == "deploy":
        if served:
            from recengine.cli.deploy_cmd import deploy_bundle

            deploy_bundle(project, domain, trained.bundle_path)
        return {**outcome, "decision": "deployed"}
    from recengine.cli.experiment_cmd import on_store
    from recengine.online.control import resolve_arms
    from recengine.online.experiments import new_experiment

    spec = resolve_arms(new_experiment(domain, [("control", str(serving_path)), ("candidate",
                                                                                 str(trained.bundle_path))]),
                        serving_path.parent.parent)
    recorded = on_store(target.store, "record_experiment", spec.model_dump())
    return {**outcome, "decision": "experiment", "experiment": recorded["id"]}


def decide(comparison: Comparison, then: str) -> str:
    """kept (``none``), refused, deployed or experiment: a new bundle is deployed only when it
    ranks at least as well on average, and tried online only when not significantly worse."""
    if then == "none":
        return "kept"
    if comparison.significantly_worse or (then == "deploy" and comparison.mean_diff < 0):
        return "refused"
    return "deployed" if then == "deploy" else "experiment"


def serving_bundle(project: str | Path, domain: str, newest: Path) -> tuple[Path, bool]:
    """The bundle the running `recengine serve` answers with (asked over HTTP), else the
    domain's newest; and whether the domain is served."""
    import httpx

    from recengine.errors import NotFoundError
    from recengine.serve_state import read_state

    try:
        state = read_state(project)
    except NotFoundError:
        return newest, False
    host = "127.0.0.1" if state.host in ("0.0.0.0", "::") else state.host
    try:
        info = httpx.get(f"http://{host}:{state.port}/{domain}/model", timeout=30).json()
        return newest.parent.parent / str(info["bundle"]) / str(info["version"]), True
    except (httpx.HTTPError, KeyError, ValueError):
        return newest, False


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _print(outcome: dict[str, Any]) -> None:
    c = outcome["comparison"]
    console.print(f"{outcome['new']} vs serving {outcome['serving']} on {c['users']} test users ({c['protocol']} "
                  f"protocol): {c['metric']} {c['new_mean']:.4f} vs {c['old_mean']:.4f} "
                  f"(difference {c['mean_diff']:+.4f}, paired t-test p = {c['t_pvalue']:.3g}, "
                  f"Wilcoxon p = {c['wilcoxon_pvalue']:.3g})")
    decision = outcome["decision"]
    if decision == "deployed":
        where = "the running replicas swapped to it" if outcome["served"] else "it is the domain's newest bundle"
        console.print(f"[bold green]Deployed[/] {outcome['new']}: {where}.")
    elif decision == "experiment":
        console.print(f"[bold]Experiment {outcome['experiment']}[/] started: {outcome['serving']} (control) vs "
                      f"{outcome['new']} (candidate). Watch it with `recengine experiment status`.")
    elif decision == "refused":
        console.print(f"[bold red]Refused[/] {outcome['new']}: it ranks worse than the serving bundle; moved to "
                      f"{outcome['moved_to']}. The serving model is unchanged.")
    else:
        console.print(f"Kept {outcome['new']} (not deployed).")
