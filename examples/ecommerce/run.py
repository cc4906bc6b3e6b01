"""E-commerce, step by step: generate -> store -> snapshot -> train -> recommend.

The ecommerce preset trains a transformer over each shopper's history with purchases
weighing 5x and carts 3x a view, never shows a product the shopper already bought, and
caps a top 10 at 3 products per category.

    .venv/bin/python examples/ecommerce/run.py            # --help for the sizes
    .venv/bin/python examples/ecommerce/run.py --language zh   # the same shop, its catalogue in Chinese
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from recengine.feature_store import FeatureStore
from recengine.pipeline import train_pipeline
from recengine.plugin_manager import get_plugin_manager
from recengine.project import domain_config
from recengine.recommender import Recommender

DOMAIN = "ecommerce"
console = Console(width=120)  # fixed width: tables read the same in a terminal or a log


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and every option's default."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path(f"./{DOMAIN}-example"), help="recreated fresh")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (at most)")
    parser.add_argument("--users", type=int, default=1_000, help="synthetic users")
    parser.add_argument("--items", type=int, default=800, help="synthetic items")
    parser.add_argument("--events", type=int, default=30_000, help="synthetic events")
    parser.add_argument("--seed", type=int, default=0, help="seed for data and training")
    parser.add_argument("--language", default=None, help="catalogue language: zh for Chinese (default English)")
    return parser.parse_args()


def show(title: str, recs, recommender: Recommender, column: str) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=title)
    for name in ("#", "item", "title", column, "score", "why"):
        table.add_column(name)
    for rank, rec in enumerate(recs, 1):
        value = recommender.catalog.columns[column][recommender.item_index[rec.item_id]]
        table.add_row(str(rank), rec.item_id, rec.title or "", str(value), f"{rec.score:.3f}", "; ".join(rec.reasons))
    console.print(table)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)  # every run starts from an empty store

    # 1. Synthetic shoppers, products and a view -> cart -> purchase funnel, as Parquet files.
    preset = get_plugin_manager().domain(DOMAIN)
    data = preset.generator(args.language)(args.users, args.items, args.events, args.seed)
    data.write(work / "data")

    # 2. A store declared with the preset's schema; ingest is one transaction over all files.
    store_path, snapshots = work / "recengine.duckdb", work / "recengine.snapshots"
    with FeatureStore(store_path, schema=preset.store_schema) as store:
        store.ingest_paths([work / "data"])
        stats = store.stats()
        # 3. Publish a Parquet snapshot: serving reads it, never the live DuckDB file.
        snapshot = store.publish(snapshots)
    console.print(f"Store: {stats['users']:,} users, {stats['items']:,} items, {stats['events']:,} events "
                  f"{stats['event_types']}, {stats['first_event'][:10]} .. {stats['last_event'][:10]}")
    console.print(f"Published snapshot v{snapshot.version} -> {snapshot.path}")

    # 4. Train the preset's default pipeline (event weights come from the preset).
    config = domain_config(DOMAIN).with_overrides({"train.epochs": args.epochs, "train.seed": args.seed})
    with console.status(f"Training {args.epochs} epochs..."):
        trained = train_pipeline(store_path, config, work / "models", progress=False)
    m = trained.metrics
    console.print(f"Trained: best epoch {m['best_epoch']}/{m['epochs_run']}, {m['epoch_seconds']:.1f}s/epoch "
                  f"-> {trained.bundle_path}")
    console.print(f"Test ({m['protocol']}, {m['test_users']} users)    model   popularity")
    for metric in ("ndcg@10", "recall@10", "hit@10"):
        console.print(f"  {metric:<10} {m['test'][metric]:>21.4f} {m['popularity'][metric]:>12.4f}")

    # 5. Recommend from the bundle + the published snapshot (live histories, reasons).
    recommender = Recommender.load(trained.bundle_path, snapshot=snapshots)
    for user in recommender.bundle.users.ids[:2]:
        show(f"Top 5 for {user}", recommender.recommend(user, 5), recommender, "category")

    # 6. Signature behaviour: purchased products never come back; the top 10 spans categories.
    #    Ground truth for "purchased" is every purchase ingested, not just recent history.
    buys = data.events.filter(pl.col("event_type") == "purchase").group_by("user_id").agg("item_id")
    purchased = dict(zip(buys["user_id"].to_list(), map(set, buys["item_id"].to_list())))
    buyer = next(u for u in recommender.bundle.users.ids[2:] if len(purchased.get(u, ())) >= 3)
    top = recommender.recommend(buyer, 10)
    show(f"Top 10 for {buyer} (bought {len(purchased[buyer])} products)", top, recommender, "category")
    categories = Counter(recommender.catalog.columns["category"][recommender.item_index[r.item_id]] for r in top)
    console.print(f"{buyer}: purchased products in the top 10: {len(purchased[buyer] & {r.item_id for r in top})}; "
                  f"{len(categories)} categories, at most {max(categories.values())} per category (cap 3)")

    # The same checks over 200 buyers.
    repeats, spans = [], []
    for user in [u for u in recommender.bundle.users.ids if u in purchased][:200]:
        top = recommender.recommend(user, 10)
        repeats.append(len(purchased[user] & {r.item_id for r in top}))
        spans.append(len({recommender.catalog.columns["category"][recommender.item_index[r.item_id]] for r in top}))
    console.print(f"{len(repeats)} buyers: {sum(repeats)} purchased products re-recommended "
                  f"(in {sum(r > 0 for r in repeats)} top 10s); {sum(spans) / len(spans):.1f} categories "
                  f"per top 10 on average")
    console.print(f"Done in {time.perf_counter() - started:.0f}s.")


if __name__ == "__main__":
    main()
