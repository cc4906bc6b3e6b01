"""Video, step by step: generate -> store -> snapshot -> train -> recommend.

The video preset trains each watch with its completion fraction as weight (a film abandoned
after 5% teaches little, one watched to the end a lot) and diversifies a top 10 by genre
(at most 4 items per genre, with maximal marginal relevance over the item vectors).

    .venv/bin/python examples/video/run.py                # --help for the sizes
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from recengine.config import ComponentRef
from recengine.dataset import prepare
from recengine.feature_store import FeatureStore
from recengine.pipeline import train_pipeline
from recengine.plugin_manager import get_plugin_manager
from recengine.project import domain_config
from recengine.recommender import Recommender

DOMAIN = "video"
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
    return parser.parse_args()


def genres(recommender: Recommender, recs) -> Counter:  # type: ignore[no-untyped-def]
    """How many of the items carry each genre (an item can have up to three)."""
    return Counter(g for r in recs for g in recommender.catalog.columns["genres"][recommender.item_index[r.item_id]])


def show(title: str, recs, recommender: Recommender) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=title)
    for name in ("#", "item", "title", "genres", "score", "why"):
        table.add_column(name)
    for rank, rec in enumerate(recs, 1):
        tags = recommender.catalog.columns["genres"][recommender.item_index[rec.item_id]]
        table.add_row(str(rank), rec.item_id, rec.title or "", ", ".join(tags), f"{rec.score:.3f}",
                      "; ".join(rec.reasons))
    console.print(table)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)  # every run starts from an empty store

    # 1-3. Generate viewers, videos and watches, ingest them with the preset's schema, publish.
    preset = get_plugin_manager().domain(DOMAIN)
    preset.generate(args.users, args.items, args.events, args.seed).write(work / "data")
    store_path, snapshots = work / "recengine.duckdb", work / "recengine.snapshots"
    with FeatureStore(store_path, schema=preset.store_schema) as store:
        store.ingest_paths([work / "data"])
        stats = store.stats()
        snapshot = store.publish(snapshots)  # serving reads this, never the live DuckDB file
    console.print(f"Store: {stats['users']:,} viewers, {stats['items']:,} videos, {stats['events']:,} watches, "
                  f"{stats['first_event'][:10]} .. {stats['last_event'][:10]}; snapshot v{snapshot.version}")

    # 4. What training will see: prepare() splits the events and computes each one's weight.
    #    The preset sets train.weight_by_value, so weight = event weight (1.0) x value (completion).
    config = domain_config(DOMAIN).with_overrides({"train.epochs": args.epochs, "train.seed": args.seed})
    with FeatureStore(store_path, read_only=True) as store:
        inter = prepare(store, config, preset.event_weights).interactions
    console.print(f"weight_by_value={config.train.weight_by_value}: {inter.weights.size:,} training watches, "
                  f"weights == completion: {np.allclose(inter.weights, inter.values)}, weights in "
                  f"[{inter.weights.min():.2f}, {inter.weights.max():.2f}], mean {inter.weights.mean():.2f}; "
                  f"first five (value -> weight): "
                  + ", ".join(f"{v:.2f}->{w:.2f}" for v, w in zip(inter.values[:5], inter.weights[:5])))

    # 5. Train (train_pipeline runs the same prepare() itself) and compare with popularity.
    with console.status(f"Training {args.epochs} epochs..."):
        trained = train_pipeline(store_path, config, work / "models", progress=False)
    m = trained.metrics
    console.print(f"Trained: best epoch {m['best_epoch']}/{m['epochs_run']}, {m['epoch_seconds']:.1f}s/epoch")
    console.print(f"Test ({m['protocol']}, {m['test_users']} users)    model   popularity")
    for metric in ("ndcg@10", "recall@10", "hit@10"):
        console.print(f"  {metric:<10} {m['test'][metric]:>21.4f} {m['popularity'][metric]:>12.4f}")

    # 6. Recommend with the preset's rankers (fallback, exclude-seen, genre diversity).
    recommender = Recommender.load(trained.bundle_path, snapshot=snapshots)
    users = recommender.bundle.users.ids
    for user in users[:2]:
        show(f"Top 5 for {user}", recommender.recommend(user, 5), recommender)

    # 7. Genre diversity: the same model and candidates, ranked without the diversity step.
    plain = Recommender.load(trained.bundle_path, snapshot=snapshots,
                             rankers=[ComponentRef(name=n) for n in ("popularity-fallback", "exclude-seen", "topk")])
    user = users[2]
    top = recommender.recommend(user, 10)
    show(f"Top 10 for {user}, diversified", top, recommender)
    console.print(f"{user}: genres diversified {dict(genres(recommender, top))}")
    console.print(f"{user}: genres score order  {dict(genres(plain, plain.recommend(user, 10)))}")
    for name, rec in (("diversified", recommender), ("score order", plain)):
        counts = [genres(rec, rec.recommend(u, 10)) for u in users[:100]]
        console.print(f"100 viewers, {name}: {np.mean([len(c) for c in counts]):.1f} genres per top 10 on average, "
                      f"most items of one genre {np.mean([max(c.values()) for c in counts]):.1f} on average")
    console.print(f"Done in {time.perf_counter() - started:.0f}s.")


if __name__ == "__main__":
    main()
