"""``recengine quickstart``: generate (or ingest) data, train, evaluate and recommend, per domain.

Each domain gets its own folder under the project directory::

    <project>/<domain>/recengine.duckdb   the feature store
    <project>/<domain>/recengine.snapshots/  the published snapshot (what serving reads)
    <project>/<domain>/models/<domain>/<version>/   the model bundle
    <project>/<domain>/data/              the generated files
"""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.common import console, friendly_errors

DEFAULT_PROJECT = "recengine-project"


def domain_paths(project: str | Path, domain: str) -> dict[str, Path]:
    """Where a domain's store, models and data live inside a project directory."""
    base = Path(project) / domain
    return {"base": base, "store": base / "recengine.duckdb", "models": base / "models", "data": base / "data",
            "snapshots": base / "recengine.snapshots"}


@click.command()
@click.option("--domains", default="ecommerce", show_default=True,
              help="Comma list of domain presets to prepare (ecommerce,news,video,social).")
@click.option("--dataset", type=click.Path(exists=True),
              help="Ingest these files/directory (e.g. RecBole ml-100k) instead of generating data.")
@click.option("--project", default=DEFAULT_PROJECT, show_default=True, type=click.Path(file_okay=False),
              help="Project directory with one folder per domain.")
@click.option("--users", default=2_000, show_default=True, type=click.IntRange(min=10))
@click.option("--items", default=1_000, show_default=True, type=click.IntRange(min=10))
@click.option("--events", default=100_000, show_default=True, type=click.IntRange(min=100))
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--show", default=3, show_default=True, type=click.IntRange(min=0), help="Users to show recommendations for.")
def quickstart(domains: str, dataset: str | None, project: str, users: int, items: int, events: int, epochs: int,
               seed: int, show: int) -> None:
    """Generate → ingest → publish → train → evaluate → recommend, in one command.

    Afterwards `recengine serve --project PROJECT` serves every prepared domain.
    """
    from engine.cli.model_cmds import _domain_default, metrics_table
    from engine.config import PipelineConfig
    from engine.pipeline import train_pipeline
    from engine.plugin_manager import get_plugin_manager
    from engine.recommender import Recommender
    from feature_store import FeatureStore
    from rich.table import Table

    names = [d.strip() for d in domains.split(",") if d.strip()]
    if dataset:
        names = [Path(dataset).name if Path(dataset).is_dir() else Path(dataset).stem]
    with friendly_errors():
        for name in names:
            paths = domain_paths(project, name)
            paths["base"].mkdir(parents=True, exist_ok=True)
            console.rule(f"[bold]{name}")
            if paths["store"].exists():
                paths["store"].unlink()  # a quick start always begins from a fresh store
            if dataset:
                schema, sources = None, [Path(dataset)]
                config = PipelineConfig(name=name)
            else:
                preset = get_plugin_manager().domain(name)
                with console.status(f"Generating {events:,} {name} events..."):
                    preset.generate(users, items, events, seed).write(paths["data"])
                schema, sources = preset.store_schema, [paths["data"]]
                config = _domain_default(name)
            with console.status("Ingesting..."), FeatureStore(paths["store"], schema=schema) as store:
                store.ingest_paths(sources)
                stats = store.stats()
                store.publish(paths["snapshots"])
            console.print(f"Store {paths['store']}: {stats['users']:,} users, {stats['items']:,} items, "
                          f"{stats['events']:,} events; snapshot published.")
            config = config.with_overrides({"train.epochs": epochs, "train.seed": seed})
            trained = train_pipeline(paths["store"], config, paths["models"])
            m = trained.metrics
            console.print(f"Trained {config.name}: best epoch {m['best_epoch']}/{m['epochs_run']}, "
                          f"{m['epoch_seconds']:.1f}s/epoch → {trained.bundle_path}")
            console.print(metrics_table(m, f"Test metrics ({m['protocol']} protocol, {m['test_users']} users)"))
            recommender = Recommender.load(trained.bundle_path, snapshot=paths["snapshots"])
            for user_id in recommender.bundle.users.ids[:show]:
                table = Table(title=f"Recommendations for user {user_id}")
                for column in ("#", "item", "title", "score", "why"):
                    table.add_column(column)
                for rank, item in enumerate(recommender.recommend(user_id, 5), 1):
                    table.add_row(str(rank), item.item_id, item.title or "", f"{item.score:.3f}", "; ".join(item.reasons))
                console.print(table)
    console.print(f"Done. Serve with: recengine serve --project {project}")
