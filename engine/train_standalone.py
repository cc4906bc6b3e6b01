"""Train from an exported training snapshot with torch, numpy and pyarrow alone.

GPU machines often have torch, numpy and pyarrow but not Ray, DuckDB or polars. Export a
snapshot where the store is (``recengine train ... --export-snapshot DIR``), copy ``DIR``
over, and run::

    python -m recengine.train_standalone DIR --device cuda --precision bf16

It runs the engine's own ``train()`` (the function local and Ray Train runs use), evaluates
on the snapshot's test split beside popularity, and writes ``DIR/result/weights.safetensors``
and ``DIR/result/metrics.json``. Nothing here imports polars, DuckDB or Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from safetensors.torch import save_file

from recengine.config import PipelineConfig
from recengine.errors import DataError, EngineError
from recengine.eval_sample import sampled_for_test
from recengine.evaluate import run_metrics
from recengine.model import resolve_device
from recengine.train import train
from recengine.training_data import load_training_data


def run(snapshot: str | Path, out: str | Path | None = None, overrides: dict | None = None,
        progress: bool = True) -> dict:
    """Train the snapshot's config (with ``overrides``) and write weights and metrics."""
    source = Path(snapshot)
    config_path = source / "config.json"
    if not config_path.exists():
        raise DataError(f"{config_path} is missing: export with `recengine train ... --export-snapshot DIR`")
    config = PipelineConfig.model_validate_json(config_path.read_text()).with_overrides(
        {k: v for k, v in (overrides or {}).items() if v is not None})
    data = load_training_data(source)
    started = time.perf_counter()
    result = train(config, data, progress=progress)
    seconds = time.perf_counter() - started
    metrics = {**run_metrics(config, sampled_for_test(data, config.train), result, seconds),
               "device": str(resolve_device(config.train.device)), "precision": config.train.precision}
    target = Path(out) if out else source / "result"
    target.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()},
              str(target / "weights.safetensors"))
    (target / "config.json").write_text(config.model_dump_json(indent=1))
    (target / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshot", help="folder written by `recengine train --export-snapshot`")
    parser.add_argument("--out", help="where to write weights and metrics (default: SNAPSHOT/result)")
    parser.add_argument("--device", help="auto, cpu or cuda[:N]")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        metrics = run(args.snapshot, args.out, {"train.device": args.device, "train.precision": args.precision,
                                                "train.epochs": args.epochs}, progress=not args.quiet)
    except EngineError as exc:  # not a snapshot, a bad config or device: say which
        print(f"error: {exc}", file=sys.stderr)
        return 2
    test = metrics["test"]
    baseline = metrics.get("popularity") or metrics.get("mean_rating") or {}
    print(json.dumps({"device": metrics["device"], "precision": metrics["precision"],
                      "epoch_seconds": round(metrics["epoch_seconds"], 3), "best_epoch": metrics["best_epoch"],
                      "test": test, "baseline": baseline}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
