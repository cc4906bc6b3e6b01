"""Train and test one RecBole model on benchmark files; runs inside RecBole's own environment.

``benchmarks/peers/vs_recbole.py`` starts this file with the isolated environment's Python,
once per model, so each run's peak memory is its own. It prints nothing the harness needs:
the result goes to ``--out`` as JSON (test metrics, per-epoch training seconds, time to the
best epoch, peak RSS). ``--cap-seconds`` is a wall-clock training budget checked after each
validation: when it is spent, training stops and the best checkpoint so far is tested, the
same rule recengine's ``train.max_minutes`` applies.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time


class BudgetSpent(Exception):
    """Raised from the epoch callback once the wall-clock budget is used up."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-path", required=True,
                        help="folder holding <dataset>/<dataset>.{train,valid,test}.inter")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--config", default="{}", help="JSON dict of RecBole settings")
    parser.add_argument("--cap-seconds", type=float, default=0.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    torch.set_num_threads(int(os.environ.get("PEER_THREADS", "1")))
    settings = {"data_path": args.data_path, "benchmark_filename": ["train", "valid", "test"],
                "checkpoint_dir": os.path.join(args.data_path, "saved"), "show_progress": False,
                **json.loads(args.config)}
    config = Config(model=args.model, dataset=args.dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    epoch_seconds: list[float] = []
    timeline: dict[str, float] = {}
    original_epoch = trainer._train_epoch

    def timed_epoch(*a, **kw):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        loss = original_epoch(*a, **kw)
        epoch_seconds.append(time.perf_counter() - start)
        return loss

    trainer._train_epoch = timed_epoch
    started = time.perf_counter()
    best = {"score": -1.0, "epoch": -1, "elapsed": 0.0}
    valid_scores: list[float] = []

    def after_epoch(epoch_idx: int, valid_score: float) -> None:
        valid_scores.append(float(valid_score))
        elapsed = time.perf_counter() - started
        if valid_score > best["score"]:
            best.update(score=float(valid_score), epoch=epoch_idx + 1, elapsed=elapsed)
        if args.cap_seconds and elapsed > args.cap_seconds:
            timeline["stopped_by_budget_after_epoch"] = epoch_idx + 1
            raise BudgetSpent

    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=after_epoch)
    except BudgetSpent:
        pass
    train_seconds = time.perf_counter() - started
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    result = {
        "model": args.model, "dataset": args.dataset,
        "test": {k: float(v) for k, v in test.items()},
        "valid_best": best["score"], "best_epoch": best["epoch"], "epochs_run": len(epoch_seconds),
        "epoch_seconds": epoch_seconds, "valid_scores": valid_scores,
        "time_to_best_seconds": best["elapsed"], "train_seconds": train_seconds,
        "train_rows": len(train_data._dataset), "items": int(test_data._dataset.item_num) - 1,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "settings": {k: config[k] for k in ("epochs", "train_batch_size", "learning_rate", "stopping_step",
                                           "embedding_size", "hidden_size", "MAX_ITEM_LIST_LENGTH", "loss_type",
                                           "reg_weight", "seed") if k in config},
        **timeline,
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
