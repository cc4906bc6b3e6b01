"""Social, step by step: generate -> store -> snapshot -> train -> people you may know.

Every user is also a *person* item (same id), beside the posts. The social preset adds the
friends-of-friends ranker: people followed by the people you follow are blended into the
learned candidates, and you never see yourself or anyone you already follow.

    .venv/bin/python examples/social/run.py               # --help for the sizes
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from recengine.feature_store import FeatureStore
from recengine.pipeline import train_pipeline
from recengine.plugin_manager import get_plugin_manager
from recengine.project import domain_config
from recengine.recommender import Recommender

DOMAIN = "social"
console = Console(width=120)  # fixed width: tables read the same in a terminal or a log


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and every option's default."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path(f"./{DOMAIN}-example"), help="recreated fresh")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (at most)")
    parser.add_argument("--users", type=int, default=1_000, help="synthetic users")
    parser.add_argument("--items", type=int, default=1_000, help="posts (people are items too)")
    parser.add_argument("--events", type=int, default=30_000, help="synthetic events")
    parser.add_argument("--seed", type=int, default=0, help="seed for data and training")
    return parser.parse_args()


def show(title: str, recs, recommender: Recommender) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=title)
    for name in ("#", "item", "kind", "title", "score", "why"):
        table.add_column(name)
    for rank, rec in enumerate(recs, 1):
        kind = recommender.catalog.columns["kind"][recommender.item_index[rec.item_id]]
        table.add_row(str(rank), rec.item_id, kind, rec.title or "", f"{rec.score:.3f}", "; ".join(rec.reasons))
    console.print(table)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)  # every run starts from an empty store

    # 1-3. Generate people, posts, follows and likes, ingest with the preset's schema, publish.
    preset = get_plugin_manager().domain(DOMAIN)
    data = preset.generate(args.users, args.items, args.events, args.seed)
    data.write(work / "data")
    store_path, snapshots = work / "recengine.duckdb", work / "recengine.snapshots"
    with FeatureStore(store_path, schema=preset.store_schema) as store:
        store.ingest_paths([work / "data"])
        stats = store.stats()
        snapshot = store.publish(snapshots)  # serving reads this, never the live DuckDB file
    console.print(f"Store: {stats['users']:,} users, {stats['items']:,} items (people + posts), "
                  f"{stats['events']:,} events {stats['event_types']}; snapshot v{snapshot.version}")

    # 4. Train the preset's pipeline (follows weigh 2x a like) and compare with popularity.
    config = domain_config(DOMAIN).with_overrides({"train.epochs": args.epochs, "train.seed": args.seed})
    with console.status(f"Training {args.epochs} epochs..."):
        trained = train_pipeline(store_path, config, work / "models", progress=False)
    m = trained.metrics
    console.print(f"Trained: best epoch {m['best_epoch']}/{m['epochs_run']}, {m['epoch_seconds']:.1f}s/epoch")
    console.print(f"Test ({m['protocol']}, {m['test_users']} users)    model   popularity")
    for metric in ("ndcg@10", "recall@10", "hit@10"):
        console.print(f"  {metric:<10} {m['test'][metric]:>21.4f} {m['popularity'][metric]:>12.4f}")

    # 5. A mixed feed of people and posts for two users.
    recommender = Recommender.load(trained.bundle_path, snapshot=snapshots)
    users = recommender.bundle.users.ids
    for user in users[:2]:
        show(f"Top 5 for {user}", recommender.recommend(user, 5), recommender)

    # 6. People you may know: a filter on the item column `kind` keeps person items only.
    #    Ground truth for "already followed" is every follow ingested, not just recent history.
    follows = data.events.filter(pl.col("event_type") == "follow").group_by("user_id").agg("item_id")
    followed = dict(zip(follows["user_id"].to_list(), map(set, follows["item_id"].to_list())))
    user = next(u for u in users[2:] if len(followed.get(u, ())) >= 3)
    top = recommender.recommend(user, 10, filters={"kind": ["person"]})
    show(f"People {user} may know (follows {len(followed[user])} people)", top, recommender)
    ids = {r.item_id for r in top}
    console.print(f"{user} in own list: {user in ids}; already-followed people in it: {len(ids & followed[user])}; "
                  f"with a 'followed by N people you follow' reason: "
                  f"{sum(any('people you follow' in x for x in r.reasons) for r in top)} of {len(top)}")

    # The same checks over 200 users who follow someone (each request reads their follows' follows).
    sample = [u for u in users if u in followed][:200]
    selves = repeats = fof = total = 0
    for u in sample:
        top = recommender.recommend(u, 10, filters={"kind": ["person"]})
        ids = {r.item_id for r in top}
        selves, repeats = selves + (u in ids), repeats + len(ids & followed[u])
        fof, total = fof + sum(any("people you follow" in x for x in r.reasons) for r in top), total + len(top)
    console.print(f"{len(sample)} followers: self in own list {selves}x, already-followed people "
                  f"{repeats}x, friend-of-friend reasons on {fof} of {total} suggestions")
    console.print(f"Done in {time.perf_counter() - started:.0f}s.")


if __name__ == "__main__":
    main()
