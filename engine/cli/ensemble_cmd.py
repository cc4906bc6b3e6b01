"""``recengine ensemble``: two bundles trained apart, blended at the score, judged on validation and test."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from recengine.cli.common import console, friendly_errors, json_option, print_json, store_option
from recengine.cli.model_cmds import models_option
from recengine.cli.report_cmd import metric_at_k


@click.command()
@click.argument("first")
@click.argument("second")
@store_option
@models_option
@click.option("--metric", default="ndcg@10", show_default=True, callback=metric_at_k,
              help="Validation metric the weight is chosen by (and of the paired tests), e.g. hit@20.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the result as JSON here.")
@json_option
def ensemble(first: str, second: str, store_path: str, models_dir: str, metric: str, out: str | None,
             as_json: bool) -> None:
    """Blend FIRST and SECOND (bundle name, name/version or directory) on FIRST's split.

    Each user's scores from each model are standardised and summed with weights w and 1 - w;
    w (0, 0.1, ..., 1) is chosen on the validation split, then the blend is tested beside both
    models, paired user by user. Typical use: an id model and a text-only model
    (`--item-encoder text` with use_ids and use_features false) trained on the same store.
    """
    from recengine.bundle import load_bundle
    from recengine.ensemble import evaluate_ensemble

    with friendly_errors():
        bundles = load_bundle(first, models_dir), load_bundle(second, models_dir)
        report = evaluate_ensemble(*bundles, store_path, metric)
    names = f"{bundles[0].name}/{bundles[0].version}", f"{bundles[1].name}/{bundles[1].version}"
    result = {"first": names[0], "second": names[1], **report.to_dict()}
    if out:
        Path(out).write_text(json.dumps(result, indent=2))
    if as_json:
        print_json(result)
        return
    weights = Table(title=f"validation {metric} by the weight of {names[0]}")
    weights.add_column("weight")
    weights.add_column(metric, justify="right")
    for weight, value in report.choice.validation.items():
        mark = " ← chosen" if weight == report.choice.weight else ""
        weights.add_row(f"{weight:.1f}", f"{value:.4f}{mark}")
    console.print(weights)
    labels = {"first": names[0], "second": names[1],
              "ensemble": f"ensemble (w = {report.choice.weight:.1f})"}
    test = Table(title=f"test ({report.protocol})")
    test.add_column("metric")
    for label in labels.values():
        test.add_column(label, justify="right")
    for name in report.test["ensemble"]:
        test.add_row(name, *(f"{report.test[key][name]:.4f}" for key in labels))
    console.print(test)
    for key, label in (("vs_first", names[0]), ("vs_second", names[1])):
        paired = report.paired[key]
        console.print(f"ensemble vs {label}: {metric} {paired['mean_diff']:+.4f} per user, "
                      f"Wilcoxon p = {paired['wilcoxon_pvalue']:.3g} (n = {paired['n']:.0f})")
