"""``recengine quickstart``: generate (or ingest) data, train, evaluate and recommend, per domain."""

from __future__ import annotations

from pathlib import Path

import click

from recengine.cli.common import console, friendly_errors
from recengine.project import DEFAULT_PROJECT


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
@click.option("--show", default=3, show_default=True, type=click.IntRange(min=0),
              help="Users to show recommendations for.")
def quickstart(domains: str, dataset: str | None, project: str, users: int, items: int, events: int, epochs: int,
               seed: int, show: int) -> None:
    """Generate → ingest → publish → train → evaluate → recommend, one folder per domain.

    Afterwards `recengine serve --project PROJECT` serves every prepared domain.
    """
    from rich.table import Table

    from recengine.cli.model_cmds import evaluated_on, metrics_table
    from recengine.project import prepare_domain
    from recengine.recommender import Recommender

    names = [d.strip() for d in domains.split(",") if d.strip()]
    if dataset:
        names = [Path(dataset).name if Path(dataset).is_dir() else Path(dataset).stem]
    with friendly_errors():
        for name in names:
            console.rule(f"[bold]{name}")
            with console.status(f"Preparing {name}..."):
                prepared = prepare_domain(project, name, users=users, items=items, events=events, epochs=epochs,
                                          seed=seed, dataset=dataset, progress=False)
            stats, trained, paths = prepared.stats, prepared.trained, prepared.paths
            console.print(f"Store {paths['store']}: {stats['users']:,} users, {stats['items']:,} items, "
                          f"{stats['events']:,} events; snapshot published to {paths['snapshots']}.")
            m = trained.metrics
            console.print(f"Trained {name}: best epoch {m['best_epoch']}/{m['epochs_run']}, "
                          f"{m['epoch_seconds']:.1f}s/epoch → {trained.bundle_path}")
            console.print(metrics_table(m, f"Test metrics ({evaluated_on(m)})"))
            recommender = Recommender.load(trained.bundle_path, snapshot=paths["snapshots"])
            for user_id in recommender.bundle.users.ids[:show]:
                table = Table(title=f"Recommendations for user {user_id}")
                for column in ("#", "item", "title", "score", "why"):
                    table.add_column(column)
                for rank, item in enumerate(recommender.recommend(user_id, 5), 1):
                    table.add_row(str(rank), item.item_id, item.title or "", f"{item.score:.3f}",
                                  "; ".join(item.reasons))
                console.print(table)
    console.print(f"Done. Serve with: recengine serve --project {project}")
