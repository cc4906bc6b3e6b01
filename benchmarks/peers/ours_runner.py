"""Train and test one recengine pipeline from ``benchmarks/quality.py`` for the peer harness.

Started by ``benchmarks/peers/vs_recbole.py`` as ``python -m benchmarks.peers.ours_runner`` (it
imports ``benchmarks.quality``) in a process of its own (so its peak memory is
its own), on the same store and split the RecBole files were written from. The result goes
to ``--out`` as JSON in the same shape as ``recbole_runner.py``'s.
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

import torch

from benchmarks.quality import PIPELINES
from recengine.pipeline import train_pipeline

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--pipeline", required=True, choices=sorted(PIPELINES))
    parser.add_argument("--models", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cap-minutes", type=float, default=0.0, help="0 keeps the pipeline's own cap")
    parser.add_argument("--quick", action="store_true", help="two epochs: check that it runs")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.set_num_threads(1)
    pipeline = PIPELINES[args.pipeline]
    overrides: dict = {}
    if args.cap_minutes:
        overrides["train.max_minutes"] = args.cap_minutes
    if args.quick:
        overrides["train.epochs"] = 2
    config = pipeline.config(args.seed, f"peers-{args.pipeline}").with_overrides(overrides)
    trained = train_pipeline(args.store, config, args.models, progress=False)
    m = trained.metrics
    history = m["history"]
    best = next((h for h in history if h["epoch"] == m["best_epoch"]), None)
    interactions = trained.data.interactions
    # rows RecBole trains on for the same split: one per training event (P-gen), or one per
    # training event after each user's first (P-seq's augmented sequences)
    sequences = interactions.user_sequences()
    rows = int(interactions.items.size) if pipeline.protocol == "gen" else int(
        sum(max(len(s) - 1, 0) for s in sequences))
    result = {
        "pipeline": args.pipeline, "description": pipeline.description, "protocol": pipeline.protocol,
        # P-seq in RecBole's convention ranks the user's earlier items too (unmasked)
        "test": m["test_unmasked"] if pipeline.protocol == "seq" else m["test"],
        "test_masked": m["test"], "popularity": m.get("popularity_unmasked") or m["popularity"],
        "valid_best": m["valid"].get("ndcg@10"), "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
        "epoch_seconds": [h["seconds"] for h in history] or [m["train_seconds"]],
        "time_to_best_seconds": best.get("elapsed", m["train_seconds"]) if best else m["train_seconds"],
        "train_seconds": m["train_seconds"], "train_rows": rows, "items": trained.data.num_items,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "neural": pipeline.neural, "config": config.model_dump(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
