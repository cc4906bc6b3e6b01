"""``recengine train | evaluate | recommend | models``: the model lifecycle from the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.table import Table

from recengine.cli.common import console, friendly_errors, json_option, print_json, store_option
from recengine.cli.report_cmd import labelled_bundles, print_report, report_options, run_report
from recengine.errors import NotFoundError
from recengine.feature_store.protocols import PROTOCOLS
from recengine.retrieval import RETRIEVAL_KINDS

if TYPE_CHECKING:  # the config module is imported by the commands that need it
    from recengine.config import PipelineConfig

Command = TypeVar("Command", bound=Callable[..., Any])

models_option = click.option(
    "--models", "models_dir", envvar="RECENGINE_MODELS", default="models", show_default=True,
    type=click.Path(file_okay=False), help="Directory of model bundles (or set RECENGINE_MODELS).",
)


def pipeline_options(function: Command) -> Command:
    """Flags that override the config file (or the defaults) for one run."""
    options = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Pipeline config (TOML)."),
        click.option("--name", help="Bundle name (models/<name>/<version>)."),
        click.option("--domain", help="Domain preset whose event weights and defaults apply."),
        click.option("--user-encoder", help="User encoder, e.g. transformer or dense."),
        click.option("--item-encoder", help="Item encoder, e.g. dense."),
        click.option("--interactor", help="Interactor: dot (formula 4.1) or attention (formula 4.2)."),
        click.option("--objective", type=click.Choice(["softmax", "bpr", "mse"]), help="Training objective."),
        click.option("--protocol", type=click.Choice(PROTOCOLS), help="Evaluation protocol / split."),
        click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs."),
        click.option("--dim", type=click.IntRange(min=2), help="Embedding size."),
        click.option("--lr", type=float, help="Learning rate."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Batch size."),
        click.option("--seed", type=int, help="Random seed of training."),
        click.option("--device", help="auto, cpu or cuda."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]),
                     help="Mixed precision: bf16 (CUDA or CPU) or fp16 (CUDA only)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def load_config(config_path: str | None, **flags: Any) -> PipelineConfig:
    from recengine.config import ComponentRef, PipelineConfig
    from recengine.project import domain_config

    config = PipelineConfig.from_toml(config_path) if config_path else domain_config(flags.get("domain"))
    overrides: dict[str, Any] = {
        "name": flags.get("name"), "domain": flags.get("domain"), "train.objective": flags.get("objective"),
        "train.protocol": flags.get("protocol"), "train.epochs": flags.get("epochs"), "model.dim": flags.get("dim"),
        "train.lr": flags.get("lr"), "train.batch_size": flags.get("batch_size"), "train.seed": flags.get("seed"),
        "train.device": flags.get("device"), "train.precision": flags.get("precision"),
    }
    for flag, key in (("user_encoder", "model.user_encoder"), ("item_encoder", "model.item_encoder"),
                      ("interactor", "model.interactor")):
        if flags.get(flag):
            overrides[key] = ComponentRef(name=flags[flag]).model_dump()
    return config.with_overrides(overrides)


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    """Model beside its baseline for each metric: popularity (and RecBole's unmasked P-seq
    view) for ranking, the training mean for ratings."""
    table = Table(title=title)
    table.add_column("metric")
    if "mean_rating" in metrics:
        columns = [("test", "model"), ("mean_rating", "mean rating")]
    else:
        columns = [("test", "model"), ("popularity", "popularity")]
    if "random" in metrics:
        columns.append(("random", "random"))
    if "test_unmasked" in metrics:
        columns += [("test_unmasked", "model (unmasked)"), ("popularity_unmasked", "popularity (unmasked)")]
    for _, label in columns:
        table.add_column(label, justify="right")
    for metric in metrics["test"]:  # a column may lack a metric (P-seq's unmasked view has no GAUC): blank there
        table.add_row(metric, *(f"{metrics[key][metric]:.4f}" if metric in metrics[key] else "" for key, _ in columns))
    return table


def evaluated_on(metrics: dict[str, Any]) -> str:
    """'seq protocol, 943 users' or 'rating protocol, 20,000 held-out ratings'."""
    if "test_rows" in metrics:
        return f"{metrics['protocol']} protocol, {metrics['test_rows']:,} held-out ratings"
    return f"{metrics['protocol']} protocol, {metrics['test_users']:,} users"


@click.command()
@store_option
@models_option
@pipeline_options
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), help="Save a checkpoint every epoch here.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --checkpoint-dir.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Train in this process, or data-parallel on Ray Train.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="Ray Train workers.")
@click.option("--address", default=None,
              help="Ray cluster to join (auto, host:port, ray://host:10001); default: a local one.")
@click.option("--cpus-per-worker", default=1.0, show_default=True, type=click.FloatRange(min=0.01))
@click.option("--gpus-per-worker", default=0.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--run-name", default=None, help="Ray run name; the same name resumes from its last checkpoint.")
@click.option("--storage", default=None, type=click.Path(file_okay=False),
              help="Checkpoint storage every node can see (default: MODELS/.ray-train).")
@click.option("--export-snapshot", type=click.Path(file_okay=False), default=None,
              help="Only write the training snapshot (Parquet + config) here, for "
                   "`python -m recengine.train_standalone DIR` on a machine with torch, numpy and pyarrow alone.")
@json_option
def train(store_path: str, models_dir: str, config_path: str | None, checkpoint_dir: str | None, resume: bool,
          backend: str, workers: int, address: str | None, cpus_per_worker: float, gpus_per_worker: float,
          run_name: str | None, storage: str | None, export_snapshot: str | None, as_json: bool,
          **flags: Any) -> None:
    """Train a model on the store's events, evaluate it and save a bundle.

    Stops early when validation NDCG@10 stops improving. The bundle lands in
    MODELS/<name>/<version>/ with weights (safetensors), id maps and metrics.
    With --backend ray the same training runs data-parallel on Ray Train workers.
    """
    from recengine.pipeline import train_pipeline

    with friendly_errors():
        config = load_config(config_path, **flags)
        if export_snapshot:
            from recengine.pipeline import export_training_snapshot

            path = export_training_snapshot(store_path, config, export_snapshot)
            if as_json:
                print_json({"snapshot": str(path)})
            else:
                console.print(f"Training snapshot written to [bold]{path}[/]; train it with "
                              f"`python -m recengine.train_standalone {path} --device cuda`")
            return
        if backend == "ray":
            from recengine.distributed import train_on_ray

            trained = train_on_ray(store_path, config, models_dir, workers=workers, address=address,
                                   cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                                   run_name=run_name, storage=storage)
        else:
            trained = train_pipeline(store_path, config, models_dir, progress=not as_json,
                                     checkpoint_dir=checkpoint_dir, resume=resume)
    if as_json:
        print_json({"bundle": str(trained.bundle_path), **trained.metrics})
        return
    m = trained.metrics
    console.print(f"Trained [bold]{config.name}[/] ({trained.result.mode} mode): best epoch {m['best_epoch']} of "
                  f"{m['epochs_run']}, {m['epoch_seconds']:.1f}s/epoch → [bold]{trained.bundle_path}[/]")
    console.print(metrics_table(m, f"Test metrics ({evaluated_on(m)})"))


@click.command()
@click.argument("model")
@store_option
@models_option
@click.option("--version", type=int, help="Bundle version (default: latest).")
@click.option("--protocol", type=click.Choice(PROTOCOLS), help="Default: the one it trained with.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the metrics as JSON here.")
@click.option("--compare", "others", multiple=True,
              help="Another bundle (name, name/version or directory) to rank the same split and pair "
                   "user by user with this one (repeatable).")
@report_options
@json_option
def evaluate(model: str, store_path: str, models_dir: str, version: int | None, protocol: str | None,
             out: str | None, others: tuple[str, ...], report_dir: str | None, segments: tuple[int, int],
             tail_fraction: float, paired_metric: str, sample_users: int | None, as_json: bool) -> None:
    """Evaluate a bundle on the store (full ranking, RecBole metrics, GAUC and beyond-accuracy
    metrics, popularity beside it).

    With --report DIR: an HTML page with metric@K curves, the training curve, per-segment bars
    and a popularity-bias plot; with --compare B: B on the same split, paired user by user;
    with --sample-users N: a seeded sample of N test users (large stores).
    """
    from recengine.bundle import load_bundle
    from recengine.pipeline import evaluate_bundle

    with friendly_errors():
        bundle = load_bundle(model, models_dir, version)
        if report_dir or others or sample_users:
            bundles = [(f"{bundle.name}/{bundle.version}", bundle), *labelled_bundles(list(others), models_dir)]
            data, page = run_report(bundles, store_path, protocol, report_dir, segments, tail_fraction,
                                    paired_metric, sample_users)
            if out:
                from recengine.report.page import report_json

                tables = {run.label: run.table(tail_fraction=tail_fraction) for run in data.runs}
                Path(out).write_text(json.dumps(report_json(data, tables, {}, ""), indent=2))
            print_report(data, page, as_json)
            return
        metrics = evaluate_bundle(bundle, store_path, protocol)
    if out:
        Path(out).write_text(json.dumps(metrics, indent=2))
    if as_json:
        print_json(metrics)
        return
    console.print(metrics_table(metrics, f"{bundle.name} v{bundle.version} ({evaluated_on(metrics)})"))


@click.command()
@click.option("--user", "user_id", required=True, help="External user id.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1, max=1000))
@click.option("--model", default=None, help="Bundle name or path (default: the only/first bundle).")
@models_option
@click.option("--snapshot", type=click.Path(file_okay=False),
              help="Snapshot root for live histories (default: the bundle's training histories).")
@click.option("--exclude", multiple=True, help="Item id never to recommend (repeatable).")
@click.option("--retrieval", type=click.Choice(RETRIEVAL_KINDS), default="exact", show_default=True,
              help="Candidate retrieval: the exact scan suits one answer; auto/ivf first build the index "
                   "serving uses (seconds at load on large catalogues).")
@json_option
def recommend(user_id: str, k: int, model: str | None, models_dir: str, snapshot: str | None,
              exclude: tuple[str, ...], retrieval: str, as_json: bool) -> None:
    """Recommend K items for a user, with the reasons for each."""
    from recengine.bundle import list_bundles
    from recengine.recommender import Recommender

    with friendly_errors():
        if model is None:
            bundles = list_bundles(models_dir)
            if not bundles:
                raise NotFoundError(f"no model bundles under {models_dir}; train one with `recengine train`")
            model = bundles[-1]["path"]
        recommender = Recommender.load(model, models_dir, snapshot, retrieval=retrieval)
        items = recommender.recommend(user_id, k, exclude=list(exclude))
    if as_json:
        print_json([r.to_dict() for r in items])
        return
    table = Table(title=f"Top {k} for user {user_id} ({recommender.bundle.name} v{recommender.bundle.version})")
    for column in ("#", "item", "title", "score", "why"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left")
    for rank, item in enumerate(items, 1):
        table.add_row(str(rank), item.item_id, item.title or "", f"{item.score:.3f}", "; ".join(item.reasons))
    console.print(table)


@click.group()
def models() -> None:
    """Inspect model bundles."""


@models.command("list")
@models_option
@json_option
def list_models(models_dir: str, as_json: bool) -> None:
    """Every bundle version with its domain, size and test NDCG@10."""
    from recengine.bundle import list_bundles

    rows = list_bundles(models_dir)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"Model bundles in {models_dir}")
    for column in ("name", "version", "domain", "users", "items", "test NDCG@10", "created"):
        table.add_column(column)
    for row in rows:
        ndcg = row.get("test_ndcg@10")
        table.add_row(row["name"], str(row["version"]), row.get("domain") or "-", str(row["num_users"]),
                      str(row["num_items"]), f"{ndcg:.4f}" if ndcg is not None else "-", row["created_at"][:19])
    console.print(table)
