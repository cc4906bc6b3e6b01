"""One-time GPU check: epochs on CUDA (fp32 and bf16) beside CPU, from a training snapshot.

Made for a machine with torch, numpy and pyarrow (plus pydantic, pluggy, rich and
safetensors) and nothing else: it imports only ``recengine.train_standalone``'s path. Export a
snapshot where the store is, then run this where the GPU is::

    recengine train --store ml.duckdb --protocol seq --user-encoder transformer \\
        --export-snapshot snap/                                   # on the store's machine
    python benchmarks/gpu_epoch.py snap/ --epochs 3               # on the GPU machine

It trains the snapshot's config for ``--epochs`` epochs on ``cpu`` (one pass, as the
baseline), ``cuda`` fp32 and ``cuda`` bf16, and prints the median epoch seconds, the
speed-ups over CPU and each run's validation NDCG@10, and writes them as JSON (``--out``).
Without CUDA it says so and exits 2: the test suite never depends on a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from recengine.train_standalone import run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshot")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-cpu", action="store_true", help="no CPU baseline (slow for big snapshots)")
    parser.add_argument("--out", default="gpu_epoch.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to check")
        return 2
    runs = [("cuda", "fp32"), ("cuda", "bf16")]
    if not args.skip_cpu:
        runs.insert(0, ("cpu", "fp32"))
    results = {}
    for device, precision in runs:
        metrics = run(args.snapshot, Path(args.snapshot) / f"result-{device}-{precision}",
                      {"train.device": device, "train.precision": precision, "train.epochs": args.epochs,
                       "train.patience": args.epochs, "train.max_minutes": None}, progress=False)
        seconds = statistics.median(h["seconds"] for h in metrics["history"])
        results[f"{device}-{precision}"] = {"median_epoch_seconds": seconds,
                                            "valid_ndcg@10": metrics["valid"].get("ndcg@10"),
                                            "test_ndcg@10": metrics["test"].get("ndcg@10")}
        print(f"{device:5s} {precision}: {seconds:8.3f} s/epoch, valid NDCG@10 {metrics['valid'].get('ndcg@10'):.4f}")
    if "cpu-fp32" in results:
        for key, value in results.items():
            value["speedup_vs_cpu"] = results["cpu-fp32"]["median_epoch_seconds"] / value["median_epoch_seconds"]
            print(f"{key}: {value['speedup_vs_cpu']:.1f}x CPU")
    results["device_name"] = torch.cuda.get_device_name(0)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
