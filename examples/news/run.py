"""News, step by step: generate -> store -> snapshot -> train -> recommend -> a breaking article.

The news preset ranks by relevance x freshness (scores halve every 12 hours), never shows an
article older than 72 hours, and reads each article's topic in the item tower, so an article
published after training is recommendable before anyone clicked it.

    .venv/bin/python examples/news/run.py                 # --help for the sizes
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from recengine.config import ComponentRef
from recengine.feature_store import FeatureStore
from recengine.pipeline import train_pipeline
from recengine.plugin_manager import get_plugin_manager
from recengine.project import domain_config
from recengine.recommender import Recommender

DOMAIN = "news"
console = Console(width=120)  # fixed width: tables read the same in a terminal or a log


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and every option's default."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path(f"./{DOMAIN}-example"), help="recreated fresh")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (at most)")
    parser.add_argument("--users", type=int, default=1_000, help="synthetic users")
    parser.add_argument("--items", type=int, default=1_000, help="synthetic items")
    parser.add_argument("--events", type=int, default=30_000, help="synthetic events")
    parser.add_argument("--seed", type=int, default=0, help="seed for data and training")
    return parser.parse_args()


def age_hours(recommender: Recommender, item_id: str, now: datetime) -> float:
    created = recommender.catalog.columns["created_at"][recommender.item_index[item_id]]
    return float((np.datetime64(now, "us") - created) / np.timedelta64(1, "h"))


def rank_of(item_id: str, recs) -> int:  # type: ignore[no-untyped-def]
    """1-based position of ``item_id`` in a list of recommendations (99 when absent)."""
    ids = [r.item_id for r in recs]
    return ids.index(item_id) + 1 if item_id in ids else 99


def show(title: str, recs, recommender: Recommender, now: datetime) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=title)
    for name in ("#", "item", "title", "topic", "age", "score", "why"):
        table.add_column(name)
    for rank, rec in enumerate(recs, 1):
        topic = recommender.catalog.columns["topic"][recommender.item_index[rec.item_id]]
        age = f"{int(age_hours(recommender, rec.item_id, now))}h"
        table.add_row(str(rank), rec.item_id, rec.title or "", topic, age, f"{rec.score:.3f}", "; ".join(rec.reasons))
    console.print(table)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)  # every run starts from an empty store

    # 1-3. Generate articles and clicks, ingest them with the preset's schema, publish a snapshot.
    preset = get_plugin_manager().domain(DOMAIN)
    data = preset.generate(args.users, args.items, args.events, args.seed)
    data.write(work / "data")
    store_path, snapshots = work / "recengine.duckdb", work / "recengine.snapshots"
    with FeatureStore(store_path, schema=preset.store_schema) as store:
        store.ingest_paths([work / "data"])
        stats = store.stats()
        snapshot = store.publish(snapshots)  # serving reads this, never the live DuckDB file
    console.print(f"Store: {stats['users']:,} readers, {stats['items']:,} articles, {stats['events']:,} clicks, "
                  f"{stats['first_event'][:10]} .. {stats['last_event'][:10]}; snapshot v{snapshot.version}")

    # 4. Train the preset's pipeline; evaluate on each reader's last click beside popularity.
    config = domain_config(DOMAIN).with_overrides({"train.epochs": args.epochs, "train.seed": args.seed})
    with console.status(f"Training {args.epochs} epochs..."):
        trained = train_pipeline(store_path, config, work / "models", progress=False)
    m = trained.metrics
    console.print(f"Trained: best epoch {m['best_epoch']}/{m['epochs_run']}, {m['epoch_seconds']:.1f}s/epoch")
    console.print(f"Test ({m['protocol']}, {m['test_users']} users)    model   popularity")
    for metric in ("ndcg@10", "recall@10", "hit@10"):
        console.print(f"  {metric:<10} {m['test'][metric]:>21.4f} {m['popularity'][metric]:>12.4f}")

    # 5. Recommend "as of" the newest article: `now` drives the decay and the 72h cutoff.
    recommender = Recommender.load(trained.bundle_path, snapshot=snapshots)
    now = data.items["created_at"].max()
    users = recommender.bundle.users.ids
    for user in users[:2]:
        show(f"Top 5 for {user} at {now:%Y-%m-%d %H:%M}", recommender.recommend(user, 5, now=now), recommender, now)

    # 6a. The cutoff, over 100 readers: nothing older than 72 hours, the youngest marked "fresh".
    #     The same model ranked without the freshness step shows what the cutoff keeps out.
    readers = users[:100]
    stale = Recommender.load(trained.bundle_path, snapshot=snapshots, rankers=[
        ComponentRef(name=n) for n in ("popularity-fallback", "exclude-seen", "topk")])
    for name, rec in (("with freshness", recommender), ("without freshness", stale)):
        tops = [rec.recommend(user, 10, now=now) for user in readers]
        ages = [age_hours(rec, r.item_id, now) for top in tops for r in top]
        fresh = sum(any(x.startswith("fresh") for x in r.reasons) for top in tops for r in top)
        console.print(f"100 readers' top 10s {name}: {len(ages)} items, oldest {max(ages):.1f}h, "
                      f"{sum(a > 72 for a in ages)} older than 72h, median age {np.median(ages):.1f}h, "
                      f"{fresh} with a 'fresh: published ...' reason")

    # 6b. A breaking article arrives after training: ingest one item, publish, reload.
    newest = data.items.sort("created_at").row(-1, named=True)
    article = pl.DataFrame({"item_id": ["breaking-1"], "title": [f"Breaking: {newest['title']}"],
                            "body": [newest["body"]], "topic": [newest["topic"]],
                            "created_at": [newest["created_at"] + timedelta(hours=1)]})
    with FeatureStore(store_path) as store:
        store.ingest(article, kind="items")
        snapshot = store.publish(snapshots)
    recommender = Recommender.load(trained.bundle_path, snapshot=snapshots)  # same bundle, snapshot v2
    now, topic = article["created_at"][0], newest["topic"]
    clicks = recommender.catalog.popularity[recommender.item_index["breaking-1"]]
    console.print(f"Snapshot v{snapshot.version}: {recommender.cold_items} item unknown to the model (breaking-1, "
                  f"{clicks:.0f} clicks), encoded by the item tower from its attributes (topic {topic!r})")
    plain = {u: rank_of("breaking-1", recommender.recommend(u, 10, now=now)) for u in readers}
    topical = {u: rank_of("breaking-1", recommender.recommend(u, 10, now=now, filters={"topic": [topic]}))
               for u in readers}
    console.print(f"breaking-1 is in the top 10 of {sum(r < 99 for r in plain.values())} of 100 readers, and in "
                  f"the {topic!r}-filtered top 10 of {sum(r < 99 for r in topical.values())} of 100")
    best = min(readers, key=plain.get)
    show(f"Top 5 for {best} at {now:%Y-%m-%d %H:%M}", recommender.recommend(best, 5, now=now), recommender, now)
    console.print(f"Done in {time.perf_counter() - started:.0f}s.")


if __name__ == "__main__":
    main()
