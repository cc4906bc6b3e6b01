"""Cold start with pretrained text vectors on MovieLens-100K: throughput, P-cold, warm effect.

Run ``python benchmarks/cold_start.py`` (default budget: ``--epochs 60``, early stopping on validation, a per-run
``--max-minutes 3`` cap, about 25 minutes on the loaded 2-core machine) or ``--quick``
(2 epochs per run, to check it works). One seed (``train.seed 0``, split seed 2020); the
warm comparisons carry a paired per-user test so a difference can be told from noise.

1. Text embedding: every item's text (``title`` + genres ``class``, joined as
   ``recengine.vectors.item_texts`` does) through ``TextEncoder.embed_texts`` (all-MiniLM-L6-v2,
   CPU) via ``recengine.vectors.build_text_vectors`` into the store's vector set ``text``.
   Throughput (items/s) is the time inside ``embed_texts`` (model load and store writes
   reported apart), printed beside the ~550 items/s quiet-machine figure from the issue and
   the machine's load average at the time; the 5 nearest neighbours of "Toy Story" are
   printed as a sanity check.
2. P-cold (``train.protocol="cold"``: 10% of items, with all their events, held out; each is
   ranked among the held-out items for the users who had it): the text pipeline (user encoder
   ``dense`` with ``use_history``, item encoder ``text`` over ``model.item_vectors=["text"]``,
   ``dot``) beside the same pipeline without text (item encoder ``dense``: ids + genre/year
   features; cold items get id 0, so only their features remain), with the popularity
   baseline (every cold item has 0 training events, so it is a tie-break by index) and random
   (mean of 5 seeds, the honest floor). Target: cold-item HR@10 >= 3x popularity's.
3. Warm effect: P-gen (dense user encoder with history) and P-seq (transformer user encoder)
   test NDCG@10 with item encoder ``text`` vs ``dense`` (both with ids + genre/year features;
   the text one adds the projected text vector). Target: warm NDCG@10 not worse with text.

Results are printed as a rich table and a Markdown table, and written to
``benchmarks/results/cold_start.json``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from recengine.config import PipelineConfig
from recengine.evaluate import evaluate_scorer, model_scorer
from recengine.feature_store import FeatureStore
from recengine.metrics import paired_test
from recengine.pipeline import TrainedPipeline, train_pipeline
from recengine.vectors import build_text_vectors, item_texts

_HERE = os.path.dirname(os.path.abspath(__file__))

ML100K = Path(_HERE).parent.parent / "shared" / "data" / "ml-100k"
RESULTS = Path(_HERE) / "results" / "cold_start.json"
FIELDS = ["title", "class"]
QUIET_ITEMS_PER_SECOND = 550.0  # the figure for a quiet 2-core machine (not measured here)
COLD_TARGET_RATIO = 3.0  # cold-item HR@10 >= 3x popularity's
K = 10

console = Console(width=None if sys.stdout.isatty() else 160)
if not sys.stdout.isatty():
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up in logs as they happen

USER_DENSE = {"name": "dense", "params": {"use_history": True}}
USER_TRANSFORMER = {"name": "transformer", "params": {}}
ITEM_TEXT = {"name": "text", "params": {}}  # ids + genre/year features + projected text vector
ITEM_DENSE = {"name": "dense", "params": {}}  # ids + genre/year features

# Warm runs use the training settings tuned in benchmarks/quality.py (softmax-mf for P-gen,
# sasrec for P-seq), so the text effect is measured on well-trained models, not under-trained ones.
USER_IDS = {"name": "dense", "params": {"use_features": False}}
USER_SASREC = {"name": "transformer", "params": {"layers": 2, "heads": 2, "dropout": 0.2}}
TUNED_GEN = {"train.objective": "softmax", "train.lr": 5e-3, "train.batch_size": 1024, "train.weight_decay": 1e-4,
             "train.patience": 6}
# lr 5e-3, not quality.py's 1e-2: with feature and text inputs the item tower overfits sooner
# (text at 1e-2: best epoch 8, test NDCG@10 0.0965; at 5e-3: valid 0.1286, test 0.1114; the
# feature-only tower at 5e-3: valid 0.1266, test 0.1092), so both towers run at 5e-3.
TUNED_SEQ = {"model.max_history": 50, "train.mode": "sequence", "train.lr": 5e-3, "train.batch_size": 64,
             "train.patience": 5}

# (protocol, user encoder, label, training overrides)
PROTOCOLS = [("cold", USER_DENSE, "P-cold", {}), ("gen", USER_IDS, "P-gen", TUNED_GEN),
             ("seq", USER_SASREC, "P-seq", TUNED_SEQ)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 epochs per run (checks the script works)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="max epochs per run (default 60, early stopping ends most runs sooner; 2 with --quick)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="train.max_minutes cap per run (default 3; 0.5 with --quick)")
    parser.add_argument("--data", type=Path, default=ML100K, help="ml-100k directory (RecBole atomic files)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results path (rewritten after every step)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on a shared 2-core machine more threads spin)")
    parser.add_argument("--protocols", default="cold,gen,seq",
                        help="comma-separated subset of cold,gen,seq (the machine is shared; P-cold comes first)")
    return parser.parse_args()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- 1. text embedding ---------------------------------------------------------------------------
def embed_items(store_path: Path) -> dict[str, Any]:
    from recengine.plugins.encoders.text import TextEncoder

    load_before = load_average()
    started = time.perf_counter()
    TextEncoder.load_model()
    model_load_s = time.perf_counter() - started
    TextEncoder.embed_texts(["warm-up"] * 8)  # first call allocates; keep it out of the timing
    spent = {"seconds": 0.0, "items": 0}

    def timed_embed(texts: list[str]) -> np.ndarray:
        begin = time.perf_counter()
        vectors = TextEncoder.embed_texts(texts)
        spent["seconds"] += time.perf_counter() - begin
        spent["items"] += len(texts)
        return vectors

    with FeatureStore(store_path) as store:
        begin = time.perf_counter()
        embedded, _ = build_text_vectors(store, timed_embed, FIELDS, name="text", rebuild=True)
        build_s = time.perf_counter() - begin
        ids, matrix = store.read_vectors("text")
        items = store.latest("items")
    texts = dict(zip(items["item_id"].to_list(), item_texts(items, FIELDS)))
    titles = dict(zip(items["item_id"].to_list(), items["title"].to_list()))
    index = {item: row for row, item in enumerate(ids)}
    anchor = next(item for item in ids if titles[item] == "Toy Story")
    similarity = matrix @ matrix[index[anchor]]
    order = [row for row in np.argsort(-similarity) if ids[row] != anchor][:5]
    neighbours = [{"item_id": ids[row], "text": texts[ids[row]], "cosine": round(float(similarity[row]), 4)}
                  for row in order]
    return {
        "items": embedded, "fields": FIELDS, "dimension": int(matrix.shape[1]),
        "model_load_s": round(model_load_s, 2), "embed_s": round(spent["seconds"], 2),
        "build_s_with_store_writes": round(build_s, 2),
        "items_per_second": round(spent["items"] / max(spent["seconds"], 1e-9), 1),
        "quiet_machine_items_per_second_from_issue": QUIET_ITEMS_PER_SECOND,
        "load_average_before": load_before, "load_average_after": load_average(),
        "torch_threads": torch.get_num_threads(),
        "anchor": {"item_id": anchor, "text": texts[anchor]}, "neighbours": neighbours,
    }


# -- 2./3. training ------------------------------------------------------------------------------
def config_for(protocol: str, user: dict[str, Any], item: dict[str, Any], epochs: int, max_minutes: float,
               tuned: dict[str, Any]) -> PipelineConfig:
    text = item["name"] == "text"
    return PipelineConfig(name=f"cold-start-{protocol}-{item['name']}").with_overrides({
        "model.user_encoder": user, "model.item_encoder": item,
        "model.item_vectors": ["text"] if text else [],
        "train.protocol": protocol, "train.epochs": epochs, "train.max_minutes": max_minutes,
        "train.seed": 0, "train.device": "cpu", **tuned,
    })


def per_user(trained: TrainedPipeline, metric: str) -> np.ndarray:
    test = trained.data.interactions.test
    _, values = evaluate_scorer(model_scorer(trained.result.model), test, (K,), True,
                                per_user=metric)
    return values


def summarise(trained: TrainedPipeline, seconds: float) -> dict[str, Any]:
    m = trained.metrics
    out = {
        "test": {k: m["test"][f"{k}@{K}"] for k in ("hit", "ndcg", "recall")},
        "popularity": {k: m["popularity"][f"{k}@{K}"] for k in ("hit", "ndcg", "recall")},
        "test_users": m["test_users"], "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
        "epoch_seconds": round(float(np.mean(m["epoch_seconds"])) if isinstance(m["epoch_seconds"], list)
                               else float(m["epoch_seconds"]), 2),
        "run_seconds": round(seconds, 1), "valid_ndcg@10": m["valid"].get("ndcg@10"),
    }
    if "random" in m:
        out["random"] = {k: m["random"][f"{k}@{K}"] for k in ("hit", "ndcg", "recall")}
        out["cold_items"] = m["cold_items"]
    if "test_unmasked" in m:
        out["test_unmasked"] = {k: m["test_unmasked"][f"{k}@{K}"] for k in ("hit", "ndcg")}
    return out


def run_protocol(store_path: Path, models: Path, protocol: str, user: dict[str, Any], label: str,
                 epochs: int, max_minutes: float, tuned: dict[str, Any]) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    trained: dict[str, TrainedPipeline] = {}
    for item in (ITEM_TEXT, ITEM_DENSE):
        name = "text" if item["name"] == "text" else "no text"
        config = config_for(protocol, user, item, epochs, max_minutes, tuned)
        console.print(f"[bold]{label}[/]: user {user['name']}, item {item['name']} "
                      f"(<= {epochs} epochs, <= {max_minutes} min; load {load_average()[0]})...")
        begin = time.perf_counter()
        trained[name] = train_pipeline(store_path, config, models, progress=False)
        runs[name] = summarise(trained[name], time.perf_counter() - begin)
        r = runs[name]
        console.print(f"  done in {r['run_seconds']:.0f}s: {r['epochs_run']} epochs (best {r['best_epoch']}, "
                      f"{r['epoch_seconds']:.1f}s/epoch); test HR@10 {r['test']['hit']:.4f}, "
                      f"NDCG@10 {r['test']['ndcg']:.4f}")
    metric = "hit@10" if protocol == "cold" else "ndcg@10"
    result: dict[str, Any] = {"protocol": protocol, "label": label, "user_encoder": user, "training": tuned,
                              "runs": runs,
                              "paired_text_vs_no_text": {"metric": metric,
                                                         **paired_test(per_user(trained["text"], metric),
                                                                       per_user(trained["no text"], metric))}}
    if protocol == "cold":
        text, pop = runs["text"]["test"]["hit"], runs["text"]["popularity"]["hit"]
        result["target"] = {"rule": f"cold HR@10 (text) >= {COLD_TARGET_RATIO}x popularity's",
                            "ratio_to_popularity": (text / pop) if pop > 0 else float("inf"),
                            "ratio_to_random": text / runs["text"]["random"]["hit"],
                            "met": text >= COLD_TARGET_RATIO * pop}
    else:
        with_text, without = runs["text"]["test"]["ndcg"], runs["no text"]["test"]["ndcg"]
        paired = result["paired_text_vs_no_text"]
        result["target"] = {"rule": "warm NDCG@10 not worse with text", "difference": with_text - without,
                            "met": with_text >= without,
                            "worse_significantly": with_text < without and paired["wilcoxon_pvalue"] < 0.05}
    return result


# -- report ----------------------------------------------------------------------------------------
def fmt(x: float) -> str:
    return f"{x:.4f}"


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = []
    for proto in results.get("protocols", []):
        runs, target, paired = proto["runs"], proto["target"], proto["paired_text_vs_no_text"]
        baselines = [("popularity", runs["text"]["popularity"])]
        if "random" in runs["text"]:
            baselines.append(("random (5 seeds)", runs["text"]["random"]))
        for name in ("text", "no text"):
            r = runs[name]
            note = f"{r['epochs_run']} ep (best {r['best_epoch']}), {r['run_seconds']:.0f}s"
            if name == "text":
                if proto["protocol"] == "cold":
                    note += (f"; {target['ratio_to_popularity']:.1f}x pop, {target['ratio_to_random']:.1f}x random "
                             f"-> {'met' if target['met'] else 'MISSED'}")
                else:
                    note += f"; Δ {target['difference']:+.4f} -> {'met' if target['met'] else 'MISSED'}"
                note += f"; paired {paired['metric']} Wilcoxon p={paired['wilcoxon_pvalue']:.3f}"
            out.append([proto["label"], f"{name} ({'text' if name == 'text' else 'dense'} item tower)",
                        fmt(r["test"]["hit"]), fmt(r["test"]["ndcg"]), note])
        for name, values in baselines:
            out.append([proto["label"], name, fmt(values["hit"]), fmt(values["ndcg"]), ""])
    return out


def report(results: dict[str, Any]) -> None:
    emb = results["embedding"]
    console.print(f"\n[bold]Text embedding[/] of {emb['items']:,} items ({' + '.join(emb['fields'])}): "
                  f"{emb['items_per_second']:.0f} items/s ({emb['embed_s']:.1f}s inside embed_texts; model load "
                  f"{emb['model_load_s']:.1f}s; with store writes {emb['build_s_with_store_writes']:.1f}s) — "
                  f"quiet-machine figure from the issue: "
                  f"~{emb['quiet_machine_items_per_second_from_issue']:.0f} items/s "
                  f"(not measured here); load average {emb['load_average_before']} before, "
                  f"{emb['load_average_after']} after, {platform.machine()} x{os.cpu_count()} cores, "
                  f"torch threads {emb['torch_threads']}")
    table = Table(title=f"Nearest neighbours of {emb['anchor']['text']!r} (cosine, text vectors)")
    for name in ("#", "item", "text", "cosine"):
        table.add_column(name)
    for rank, n in enumerate(emb["neighbours"], 1):
        table.add_row(str(rank), n["item_id"], n["text"], f"{n['cosine']:.3f}")
    console.print(table)

    headers = ["protocol", "model", "HR@10", "NDCG@10", "notes"]
    table = Table(title=f"ml-100k cold start with text vectors (1 seed; <= {results['settings']['epochs']} epochs, "
                        f"<= {results['settings']['max_minutes']} min per run)")
    for name in headers:
        table.add_column(name, justify="right" if name in ("HR@10", "NDCG@10") else "left")
    for row in rows(results):
        table.add_row(*row)
    console.print(table)
    cold = next((p for p in results.get("protocols", []) if p["protocol"] == "cold"), None)
    if cold:
        console.print(f"P-cold: {cold['runs']['text']['cold_items']} cold items, "
                      f"{cold['runs']['text']['test_users']} test users; popularity of every cold item is 0 in "
                      f"training, so its ranking is a tie-break by item index.")
    console.print("\nMarkdown (README):\n")
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join(["---", "---", "---:", "---:", "---"]) + "|")
    for row in rows(results):
        print("| " + " | ".join(row) + " |")
    print(f"\nText embedding: {emb['items_per_second']:.0f} items/s at load average {emb['load_average_before'][0]} "
          f"on 2 cores (quiet-machine figure from the issue: ~{QUIET_ITEMS_PER_SECOND:.0f} items/s).")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    epochs = args.epochs or (2 if args.quick else 60)
    max_minutes = args.max_minutes or (0.5 if args.quick else 3.0)
    if not (args.data / "ml-100k.inter").exists():
        raise SystemExit(f"ml-100k not found at {args.data}")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "cold_start", "dataset": "ml-100k",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_start": load_average()},
        "settings": {"epochs": epochs, "max_minutes": max_minutes, "quick": args.quick, "protocols": args.protocols,
                     "seeds": [0], "split_seed": 2020, "dim": 64, "max_history": 50, "k": K},
    }
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        store_path, models = Path(tmp) / "store.duckdb", Path(tmp) / "models"
        begin = time.perf_counter()
        with FeatureStore(store_path) as store:
            store.ingest_paths([args.data])
        results["ingest_s"] = round(time.perf_counter() - begin, 2)
        console.print(f"Ingested ml-100k in {results['ingest_s']:.1f}s; embedding item text...")
        results["embedding"] = embed_items(store_path)
        e = results["embedding"]
        console.print(f"  {e['items']} items at {e['items_per_second']:.0f} items/s "
                      f"(load {e['load_average_after'][0]})")
        save(results, args.out)
        wanted = [p.strip() for p in args.protocols.split(",") if p.strip()]
        results["protocols"] = []
        for protocol, user, label, tuned in PROTOCOLS:
            if protocol in wanted:
                results["protocols"].append(run_protocol(store_path, models, protocol, user, label, epochs, max_minutes,
                                                              tuned))
                save(results, args.out)  # a partial result survives an interrupted run
    results["machine"]["load_average_end"] = load_average()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["complete"] = True
    save(results, args.out)
    report(results)
    console.print(f"\nTotal {results['total_seconds']:.0f}s; "
                  f"load average at end {results['machine']['load_average_end']}")
    console.print(f"Wrote {args.out}")


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"complete": False, **results}, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
