"""Side by side with RecBole 1.2.1 on MovieLens-100K: same data, same splits, same machine, same run.

Run ``python benchmarks/peers/vs_recbole.py`` (27 minutes on the quiet 2-core development
machine; ``--quick`` trains two epochs of everything to check that it runs). It

1. builds an isolated virtual environment for RecBole 1.2.1 on first use (``--env``,
   default ``benchmarks/peers/.recbole-env``): RecBole runs here only with ``numpy<2``,
   ``pandas<2.3`` and ``setuptools<81``, on the same ``torch==2.13.0`` CPU build, and with
   ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (its final checkpoint load fails under torch ≥ 2.6);
2. ingests ml-100k into a fresh recengine store and writes recengine's own splits as RecBole
   benchmark files (``<dataset>.train/.valid/.test.inter`` read through
   ``benchmark_filename``), so both libraries rank exactly the same held-out items:
   P-gen (per-user random 80/10/10, split seed 2020; full ranking with the user's training
   (and, for test, validation) items masked, as RecBole masks them) and P-seq (leave the
   last two events out by time; RecBole's sequential files carry each target's preceding
   items, at most 50; full ranking, seen items not masked: RecBole's convention);
3. trains RecBole's Pop, BPR, EASE (P-gen) and SASRec (P-seq, CE loss, so
   ``train_neg_sample_args: ~``) and recengine's matching pipelines from
   ``benchmarks/quality.py`` (bpr-mf vs BPR, ease vs EASE, sasrec vs SASRec, plus softmax-mf),
   one process per model for honest peak memory, one torch thread each, fixed seeds;
4. prints one table per protocol with NDCG/Recall/Hit/MRR@10, seconds per training epoch,
   training samples per second (rows of the same training file per epoch second), time to
   the best epoch, peak RSS, the ratios of each matched pair and the targets, and writes
   ``benchmarks/results/peers.json`` and ``benchmarks/results/peers.md``.

Budgets, the same rule for both sides: embedding size 64 everywhere; each model has its own
early stopping on validation NDCG@10 (RecBole: ``stopping_step`` 10, its default; recengine:
the pipeline's patience) and each matched pair shares one wall-clock training cap, checked
after every epoch's validation (``--cap-sasrec`` 20 min, ``--cap-bpr`` 5 min; RecBole's
SASRec needs ~155-198 s an epoch here, so the cap is what stops it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from recengine.feature_store import FeatureStore

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RECBOLE_REQUIREMENTS = ["recbole==1.2.1", "numpy<2", "pandas<2.3", "setuptools<81", "torch==2.13.0"]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k"
RESULTS = REPO / "benchmarks" / "results"
METRICS = ("ndcg@10", "recall@10", "hit@10", "mrr@10")
SEQ_MAX_LEN = 50
console = Console(width=None if sys.stdout.isatty() else 170)

COMMON = {"seed": 2020, "reproducibility": True, "device": "cpu", "use_gpu": False,
          "topk": [10], "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "valid_metric": "NDCG@10",
          "embedding_size": 64, "epochs": 300, "stopping_step": 10, "eval_step": 1}
GEN = {"load_col": {"inter": ["user_id", "item_id", "timestamp"]},
       "eval_args": {"order": "RO", "mode": "full", "group_by": "user", "split": {"RS": [0.8, 0.1, 0.1]}}}
SEQ = {"load_col": {"inter": ["user_id", "item_id", "timestamp", "item_id_list"]},
       "alias_of_item_id": ["item_id_list"], "MAX_ITEM_LIST_LENGTH": SEQ_MAX_LEN,
       "eval_args": {"order": "TO", "mode": "full", "group_by": "user", "split": {"LS": "valid_and_test"}}}


# (side, label, model or pipeline, protocol, extra RecBole settings, cap key)
JOBS: list[tuple[str, str, str, str, dict[str, Any], str | None]] = [
    ("recbole", "Pop", "Pop", "gen", {}, None),
    ("recbole", "EASE", "EASE", "gen", {"reg_weight": 250.0}, None),
    ("recbole", "BPR", "BPR", "gen", {}, "bpr"),
    ("ours", "ease", "ease", "gen", {}, None),
    ("ours", "bpr-mf", "bpr-mf", "gen", {}, "bpr"),
    ("ours", "softmax-mf", "softmax-mf", "gen", {}, "bpr"),
    ("recbole", "SASRec", "SASRec", "seq", {"train_neg_sample_args": None, "loss_type": "CE",
                                            "hidden_size": 64, "n_layers": 2, "n_heads": 2}, "sasrec"),
    ("ours", "sasrec", "sasrec", "seq", {}, "sasrec"),
]
PAIRS = {"gen": [("bpr-mf", "BPR"), ("ease", "EASE")], "seq": [("sasrec", "SASRec")]}
THROUGHPUT_PAIRS = [("bpr-mf", "BPR"), ("sasrec", "SASRec")]


# -- environment ---------------------------------------------------------------------------------
def ensure_env(env: Path) -> Path:
    """The isolated RecBole environment's Python, built on first use."""
    python = env / "bin" / "python"
    check = [str(python), "-c", "import recbole; assert recbole.__version__ == '1.2.1'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    console.print(f"building RecBole's environment in {env} ({' '.join(RECBOLE_REQUIREMENTS)}) ...")
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *RECBOLE_REQUIREMENTS], check=True)
    subprocess.run(check, check=True)
    return python


# -- splits as RecBole benchmark files -----------------------------------------------------------
def ordered_split(store: FeatureStore, protocol: str) -> pl.DataFrame:
    """recengine's split, each user's events in the store's stable time order."""
    return store.split(protocol, seed=2020).sort("user_id", "ts", "seq")


def write_general(split: pl.DataFrame, folder: Path, name: str) -> dict[str, int]:
    """P-gen: one row per event in each part."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    frame = split.select(pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8),
                         pl.col("ts").dt.epoch("s").cast(pl.Float64).alias("timestamp"), "split")
    for part in ("train", "valid", "test"):
        rows = frame.filter(pl.col("split") == part).drop("split")
        counts[part] = rows.height
        _write_atomic(rows.rename({"user_id": "user_id:token", "item_id": "item_id:token",
                                   "timestamp": "timestamp:float"}), folder / f"{name}.{part}.inter")
    return counts


def write_sequential(split: pl.DataFrame, folder: Path, name: str) -> dict[str, int]:
    """P-seq: each target with its preceding items (at most ``SEQ_MAX_LEN``), as RecBole's own
    augmentation would build them: every training event after a user's first, then the
    validation event after all training events, then the test event after those."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[tuple[str, str, float, str]]] = {"train": [], "valid": [], "test": []}
    for (user,), events in split.group_by("user_id", maintain_order=True):
        items = [str(i) for i in events["item_id"].to_list()]
        stamps = events["ts"].dt.epoch("s").to_list()
        parts = events["split"].to_list()
        for index in range(1, len(items)):
            if parts[index] not in rows:
                continue
            history = items[max(0, index - SEQ_MAX_LEN):index]
            rows[parts[index]].append((str(user), items[index], float(stamps[index]), " ".join(history)))
    counts = {}
    for part, records in rows.items():
        frame = pl.DataFrame(records, schema=["user_id:token", "item_id:token", "timestamp:float",
                                              "item_id_list:token_seq"], orient="row")
        counts[part] = frame.height
        _write_atomic(frame, folder / f"{name}.{part}.inter")
    return counts


def _write_atomic(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    frame.write_csv(tmp, separator="\t", quote_style="never")
    tmp.replace(path)


# -- running -------------------------------------------------------------------------------------
def run_job(job: tuple, python: Path, work: Path, caps: dict[str, float], quick: bool) -> dict[str, Any]:
    side, label, target, protocol, extra, cap_key = job
    out = work / "results" / f"{side}-{label}-{protocol}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cap_minutes = caps.get(cap_key, 0.0) if cap_key else 0.0
    env = {**os.environ, "PYTHONPATH": str(REPO), "PEER_THREADS": "1", "OMP_NUM_THREADS": "1",
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    if side == "recbole":
        settings = {**COMMON, **(GEN if protocol == "gen" else SEQ), **extra}
        if quick:
            settings["epochs"] = 2
        command = [str(python), str(HERE / "recbole_runner.py"), "--model", target, "--data-path",
                   str(work / "datasets"), "--dataset", f"ml-100k-{protocol}", "--config", json.dumps(settings),
                   "--cap-seconds", str(cap_minutes * 60), "--out", str(out)]
    else:
        # a module of the benchmarks package (it reuses quality.py's pipelines), run from the repository
        command = [sys.executable, "-m", "benchmarks.peers.ours_runner", "--store", str(work / "ml-100k.duckdb"),
                   "--pipeline", target, "--models", str(work / "models"), "--out", str(out)]
        if cap_minutes:
            command += ["--cap-minutes", str(cap_minutes)]
        if quick:
            command.append("--quick")
    console.print(f"[bold]{side} {label}[/] ({protocol}) ...", end=" ")
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=str(work))
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-3000:]
        console.print(f"[red]failed[/] after {wall:.0f} s\n{tail}")
        return {"side": side, "label": label, "protocol": protocol, "error": tail, "wall_seconds": wall}
    result = json.loads(out.read_text())
    result.update(side=side, label=label, protocol=protocol, wall_seconds=wall, cap_minutes=cap_minutes or None)
    result["samples_per_second"] = result["train_rows"] / _mean(result["epoch_seconds"])
    console.print(f"NDCG@10 {result['test']['ndcg@10']:.4f}, {_mean(result['epoch_seconds']):.2f} s/epoch, "
                  f"{result['epochs_run']} epochs (best {result['best_epoch']}), {wall:.0f} s")
    return result


def _mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)


# -- reporting -----------------------------------------------------------------------------------
def rows_for(results: list[dict[str, Any]], protocol: str) -> list[dict[str, Any]]:
    return [r for r in results if r["protocol"] == protocol and "error" not in r]


def find(results: list[dict[str, Any]], protocol: str, label: str) -> dict[str, Any] | None:
    return next((r for r in rows_for(results, protocol) if r["label"] == label), None)


def best_of(results: list[dict[str, Any]], protocol: str, side: str) -> dict[str, Any] | None:
    """The side's best model on this protocol, chosen by validation NDCG@10 (never test)."""
    rows = [r for r in rows_for(results, protocol) if r["side"] == side and r["label"] != "Pop"]
    return max(rows, key=lambda r: r.get("valid_best") or 0.0, default=None)


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for protocol, pairs in PAIRS.items():
        for ours_label, theirs_label in pairs:
            ours, theirs = find(results, protocol, ours_label), find(results, protocol, theirs_label)
            if ours and theirs:
                out.append({
                    "protocol": protocol, "ours": ours_label, "recbole": theirs_label,
                    "ndcg@10_ratio": ours["test"]["ndcg@10"] / max(theirs["test"]["ndcg@10"], 1e-12),
                    "throughput_ratio": ours["samples_per_second"] / theirs["samples_per_second"],
                    "time_to_best_ratio": ours["time_to_best_seconds"] / max(theirs["time_to_best_seconds"], 1e-9),
                    "peak_memory_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
                })
    return out


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for protocol in ("gen", "seq"):
        ours, theirs = best_of(results, protocol, "ours"), best_of(results, protocol, "recbole")
        if ours and theirs:
            out.append({"target": f"P-{protocol}: recengine's best ({ours['label']}) above RecBole's best "
                                  f"({theirs['label']}) on NDCG@10",
                        "ours": ours["test"]["ndcg@10"], "recbole": theirs["test"]["ndcg@10"],
                        "met": ours["test"]["ndcg@10"] > theirs["test"]["ndcg@10"]})
    for ours_label, theirs_label in THROUGHPUT_PAIRS:
        protocol = "gen" if theirs_label == "BPR" else "seq"
        ours, theirs = find(results, protocol, ours_label), find(results, protocol, theirs_label)
        if ours and theirs:
            speed = ours["samples_per_second"] / theirs["samples_per_second"]
            quality = ours["test"]["ndcg@10"] >= theirs["test"]["ndcg@10"]
            out.append({"target": f"{ours_label} ≥ 3× {theirs_label}'s training samples/s with NDCG@10 ≥ its",
                        "throughput_ratio": speed, "ours": ours["test"]["ndcg@10"],
                        "recbole": theirs["test"]["ndcg@10"], "met": speed >= 3.0 and quality})
    return out


def table_rows(results: list[dict[str, Any]], protocol: str) -> list[list[str]]:
    lines = []
    for r in rows_for(results, protocol):
        t = r["test"]
        closed = r["label"] in ("Pop", "EASE", "ease")  # no gradient epochs: counted, fitted once
        lines.append([
            "RecBole 1.2.1" if r["side"] == "recbole" else "recengine", r["label"],
            *(f"{t[m]:.4f}" for m in METRICS),
            f"{_mean(r['epoch_seconds']):.2f}", f"{r['samples_per_second']:,.0f}",
            "closed form" if closed else f"{r['best_epoch']}/{r['epochs_run']}",
            f"{r['time_to_best_seconds']:.0f}", f"{r['peak_rss_mb']:.0f}",
        ])
    return lines


HEADERS = ["library", "model", "NDCG@10", "Recall@10", "Hit@10", "MRR@10", "s/epoch", "samples/s",
           "best/run epochs", "s to best", "peak MB"]


def print_tables(results: list[dict[str, Any]]) -> None:
    for protocol, title in (("gen", "P-gen (random 80/10/10, seen items masked)"),
                            ("seq", "P-seq (leave-last-out by time, RecBole's unmasked convention)")):
        table = Table(title=title)
        for header in HEADERS:
            table.add_column(header, justify="left" if header in ("library", "model") else "right")
        for line in table_rows(results, protocol):
            table.add_row(*line)
        console.print(table)


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    parts = [f"Measured {meta['date']} on {meta['machine']} (`python benchmarks/peers/vs_recbole.py`, "
             f"{meta['total_minutes']:.0f} min), identical split files for both libraries, one torch thread, "
             f"embedding size 64, training caps: BPR pair {meta['caps']['bpr']:g} min, SASRec pair "
             f"{meta['caps']['sasrec']:g} min (checked after each validation), early stopping on validation "
             f"NDCG@10 (RecBole stopping_step 10, recengine its patience).", ""]
    for protocol, title in (("gen", "P-gen (random 80/10/10 per user, training items masked)"),
                            ("seq", "P-seq (leave-last-out by time, unmasked: RecBole's convention)")):
        parts += [f"**{title}**", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        parts += ["| " + " | ".join(line) + " |" for line in table_rows(results, protocol)]
        parts.append("")
    parts += ["| pair | NDCG@10 ratio | samples/s ratio | time-to-best ratio | peak-memory ratio |",
              "|---|---|---|---|---|"]
    for r in ratios(results):
        parts.append(f"| {r['ours']} / {r['recbole']} (P-{r['protocol']}) | {r['ndcg@10_ratio']:.2f} | "
                     f"{r['throughput_ratio']:.1f}× | {r['time_to_best_ratio']:.2f} | {r['peak_memory_ratio']:.2f} |")
    parts.append("")
    for t in targets(results):
        parts.append(f"- {'met' if t['met'] else '**missed**'}: {t['target']} "
                     f"(recengine {t['ours']:.4f}, RecBole {t['recbole']:.4f}"
                     + (f", throughput {t['throughput_ratio']:.1f}×" if "throughput_ratio" in t else "") + ")")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ml-100k RecBole atomic files")
    parser.add_argument("--env", default=str(HERE / ".recbole-env"), help="RecBole's isolated environment")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--cap-sasrec", type=float, default=20.0, help="minutes of training per SASRec model")
    parser.add_argument("--cap-bpr", type=float, default=5.0, help="minutes of training per BPR-class model")
    parser.add_argument("--only", help="comma-separated job labels to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="two epochs of everything: check that it runs")
    parser.add_argument("--out", default=str(RESULTS / "peers.json"))
    parser.add_argument("--report", metavar="JSON", help="only print and rewrite the report of a saved run")
    args = parser.parse_args(argv)
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        meta = {k: v for k, v in saved.items() if k not in ("benchmark", "results", "ratios", "targets", "markdown")}
        return write_report(saved["results"], meta, Path(args.out))

    data = Path(args.data)
    if not (data / "ml-100k.inter").exists():
        console.print(f"[red]ml-100k not found at {data}[/] (--data)")
        return 2
    started = time.perf_counter()
    python = ensure_env(Path(args.env))
    with tempfile.TemporaryDirectory(prefix="recengine-peers-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        store_path = work / "ml-100k.duckdb"
        store_path.unlink(missing_ok=True)
        with FeatureStore(store_path) as store:
            store.ingest_paths([data])
            files = {"gen": write_general(ordered_split(store, "gen"), work / "datasets" / "ml-100k-gen",
                                          "ml-100k-gen"),
                     "seq": write_sequential(ordered_split(store, "seq"), work / "datasets" / "ml-100k-seq",
                                             "ml-100k-seq")}
        console.print(f"split files written: {files}")
        caps = {"sasrec": args.cap_sasrec, "bpr": args.cap_bpr}
        only = {s.strip() for s in args.only.split(",")} if args.only else None
        results = [run_job(job, python, work, caps, args.quick) for job in JOBS if not only or job[1] in only]
    total_minutes = (time.perf_counter() - started) / 60
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "total_minutes": total_minutes,
            "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
            "caps": caps, "quick": args.quick, "split_rows": files,
            "recbole_environment": RECBOLE_REQUIREMENTS, "load_average_end": list(os.getloadavg())}
    return write_report(results, meta, Path(args.out))


def write_report(results: list[dict[str, Any]], meta: dict[str, Any], out: Path) -> int:
    """Print the tables, ratios and targets; write the JSON and the Markdown table."""
    print_tables(results)
    for r in ratios(results):
        console.print(f"{r['ours']} / {r['recbole']} (P-{r['protocol']}): NDCG@10 ×{r['ndcg@10_ratio']:.2f}, "
                      f"samples/s ×{r['throughput_ratio']:.1f}, time to best ×{r['time_to_best_ratio']:.2f}, "
                      f"peak memory ×{r['peak_memory_ratio']:.2f}")
    summary = markdown(results, meta)
    console.print(summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "peers-recbole", **meta, "results": results, "ratios": ratios(results),
                               "targets": targets(results), "markdown": summary}, indent=1, default=str))
    out.with_suffix(".md").write_text(summary)
    console.print(f"written: {out} and {out.with_suffix('.md')}")
    failed = [r["label"] for r in results if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
