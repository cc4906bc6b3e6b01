"""What users type: does feeding the user tower recent searches raise NDCG@10? (issue 19)

Run ``python benchmarks/searches.py`` (about 30 minutes on 2 cores) or ``--quick`` (2 epochs, one
seed: checks that it works). ``--seeds 0`` and ``--candidates "A;B" --seeds 1,2`` split a run across two
processes, ``--combine`` joins their result files (keeping the seed-0 run's winner).

1. Synthetic e-commerce (``recengine data generate --domain ecommerce``): a quarter of product views
   follow a search minutes earlier that names the product ("wireless headphones", "Norvex
   headphones"; a quarter of searches name a random other product). Ingested, then
   ``recengine vectors build`` embeds item text and every distinct query with all-MiniLM-L6-v2
   into the set ``text``.
2. P-seq (each user's last event is test, the one before validation). Every pipeline is the dense
   two-tower model (user: id + mean of the history; item: id, attributes and the text vector;
   dot; full softmax; pairs training). The baseline reads no searches; each ``model.searches``
   variant pools the user's last N searches within an age limit before the prediction's time.
3. Seed 0 trains every variant; the one with the best **validation** NDCG@10 is the winner and
   trains again, with the baseline, on the other seeds. The paired per-user test (t-test and
   Wilcoxon) compares each user's mean test NDCG@10 over the seeds, for all test users and for
   those who searched within the hour before their test event (where a query can help).

Results go to ``benchmarks/results/searches.json``.
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
from rich.console import Console
from rich.table import Table

from recengine.config import PipelineConfig
from recengine.evaluate import evaluate_scorer, model_scorer
from recengine.feature_store import FeatureStore
from recengine.metrics import paired_test
from recengine.pipeline import TrainedPipeline, train_pipeline
from recengine.plugin_manager import get_plugin_manager
from recengine.plugins.domains import ecommerce
from recengine.vectors import build_query_vectors, build_text_vectors

_HERE = Path(__file__).resolve().parent
RESULTS = _HERE / "results" / "searches.json"
SIZE = {"users": 3000, "items": 1000, "events": 80_000}
DATA_SEED = 0
BASELINE = "no searches"
VARIANTS: dict[str, dict[str, Any] | None] = {
    BASELINE: None,
    "last 1, 30 days": {"vectors": "text", "last": 1, "max_age_days": 30},
    "last 1, 1 hour": {"vectors": "text", "last": 1, "max_age_days": 1 / 24},
    "last 3, 1 hour": {"vectors": "text", "last": 3, "max_age_days": 1 / 24},
}
RECENT_SECONDS = 3600  # "searched within the hour before the test event"

console = Console(width=None if sys.stdout.isatty() else 160)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 epochs per run, seed 0 only")
    parser.add_argument("--epochs", type=int, default=None, help="max epochs per run (default 20; 2 with --quick)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds; the first chooses the winner")
    parser.add_argument("--candidates", default=None,
                        help="';'-separated variants: skip the seed-0 choice and train these (and the baseline) "
                             "on --seeds, for a second process; --combine keeps the first process's winner")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--combine", nargs="+", type=Path, default=None,
                        help="join result files of runs over disjoint seeds into --out")
    return parser.parse_args(argv)


def prepare_store(work: Path) -> tuple[Path, dict[str, Any]]:
    """Generate, ingest and embed the shop; returns the store and what the data holds."""
    preset = get_plugin_manager().domain("ecommerce")
    data = ecommerce.generate(SIZE["users"], SIZE["items"], SIZE["events"], DATA_SEED)
    data.write(work / "data")
    store_path = work / "shop.duckdb"
    with FeatureStore(store_path, schema=preset.store_schema) as store:
        store.ingest_paths([work / "data"])
        encoder = get_plugin_manager().get("encoders", "text")
        began = time.perf_counter()
        build_text_vectors(store, encoder.embed_texts, preset.text_fields, "text", encoder="text")
        queries = build_query_vectors(store, encoder.embed_texts, "text")
        seconds = time.perf_counter() - began
        stats = store.stats()
    facts = {**SIZE, "data_seed": DATA_SEED, "searches": stats["searches"], "distinct_queries": queries,
             "search_rate": ecommerce.SEARCH_RATE, "search_noise": ecommerce.SEARCH_NOISE,
             "embedding_seconds": round(seconds, 1)}
    console.print(f"{stats['events']:,} events, {stats['searches']:,} searches ({queries:,} distinct queries) "
                  f"embedded with the items in {seconds:.0f}s")
    return store_path, facts


def config_for(name: str, searches: dict[str, Any] | None, seed: int, epochs: int,
               threads: int | None) -> PipelineConfig:
    overrides: dict[str, Any] = {
        "domain": "ecommerce",
        "model.user_encoder": {"name": "dense", "params": {"use_history": True}},
        "model.item_encoder": {"name": "dense", "params": {"use_features": True}},
        "model.item_vectors": ["text"], "model.searches": searches,
        "train.protocol": "seq", "train.mode": "pairs", "train.epochs": epochs, "train.patience": 3,
        "train.lr": 2e-3, "train.seed": seed, "train.device": "cpu",
    }
    if threads:
        overrides["train.threads"] = threads
    return PipelineConfig(name=name).with_overrides(overrides)


def run_variant(store: Path, models: Path, label: str, seed: int, epochs: int,
                threads: int | None) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None]:
    """Train one variant; returns its summary, per-user test NDCG@10 and the recent-search mask."""
    console.print(f"  seed {seed}: {label} (load {os.getloadavg()[0]:.1f})...")
    began = time.perf_counter()
    trained = train_pipeline(store, config_for("searches-" + str(seed), VARIANTS[label], seed, epochs, threads),
                             models, progress=False)
    seconds = time.perf_counter() - began
    test = trained.data.interactions.test
    values, per_user = evaluate_scorer(model_scorer(trained.result.model), test, (10,), False, per_user="ndcg@10")
    summary = {"test_ndcg@10": values["ndcg@10"], "test_hit@10": values["hit@10"],
               "valid_ndcg@10": trained.metrics["valid"].get("ndcg@10"), "best_epoch": trained.metrics["best_epoch"],
               "run_seconds": round(seconds, 1)}
    console.print(f"    test NDCG@10 {values['ndcg@10']:.4f}, valid {summary['valid_ndcg@10']:.4f}, "
                  f"best epoch {summary['best_epoch']}, {seconds:.0f}s")
    return summary, per_user, recent_search_mask(store, trained)


def recent_search_mask(store: Path, trained: TrainedPipeline) -> np.ndarray | None:
    """Which test users searched within RECENT_SECONDS before their test event (None for a run
    whose data kept no event times: the baseline's; the test users are the same in every run)."""
    from recengine.dataset import load_search_log

    test = trained.data.interactions.test
    if test.query_times is None:
        return None
    recent = config_for("mask", {"vectors": "text", "last": 1, "max_age_days": RECENT_SECONDS / 86_400}, 0, 1, None)
    with FeatureStore(store, read_only=True) as opened:
        log = load_search_log(opened, recent, trained.data.users)
    assert log is not None
    pooled = log.pool(test.users, test.query_times)
    return np.abs(pooled).sum(axis=1) > 0


def paired(first: list[np.ndarray], second: list[np.ndarray], mask: np.ndarray | None = None) -> dict[str, float]:
    a, b = np.mean(first, axis=0), np.mean(second, axis=0)
    return paired_test(a if mask is None else a[mask], b if mask is None else b[mask])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.combine:
        combine(args.combine, args.out)
        return
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    epochs = args.epochs or (2 if args.quick else 20)
    runs: dict[str, dict[str, dict[str, Any]]] = {}  # label -> seed -> summary
    per_user: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="searches-") as tmp:
        work = Path(tmp)
        store, facts = prepare_store(work)
        mask = None
        candidates = [c.strip() for c in args.candidates.split(";")] if args.candidates else None
        unknown = [c for c in candidates or [] if c not in VARIANTS]
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; variants: {list(VARIANTS)}")
        winner = None
        if candidates is None:
            console.print("[bold]seed 0: every variant[/]")
            for label in VARIANTS:
                summary, values, found = run_variant(store, work / "models", label, seeds[0], epochs, args.threads)
                mask = found if found is not None else mask
                runs.setdefault(label, {})[str(seeds[0])] = summary
                per_user.setdefault(label, {})[str(seeds[0])] = values
            winner = max((label for label in VARIANTS if label != BASELINE),
                         key=lambda label: runs[label][str(seeds[0])]["valid_ndcg@10"])
            console.print(f"winner on validation: [bold]{winner}[/]")
            rest = seeds[1:]
        else:
            rest = seeds
        for seed in rest:
            for label in dict.fromkeys([BASELINE, *(candidates or [winner])]):
                summary, values, found = run_variant(store, work / "models", label, seed, epochs, args.threads)
                mask = found if found is not None else mask
                runs.setdefault(label, {})[str(seed)] = summary
                per_user.setdefault(label, {})[str(seed)] = values
    assert mask is not None
    result = {
        "benchmark": "searches", "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"epochs": epochs, "seeds": seeds, "quick": args.quick, "variants": VARIANTS},
        "data": facts, "winner": winner, "candidates": candidates, "runs": runs,
        "per_user": {label: {seed: values.tolist() for seed, values in by_seed.items()}
                     for label, by_seed in per_user.items()},
        "recent_search_users": mask.tolist(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if winner is not None:
        result["tests"] = tests_of(result)
    write_result(result, args.out)
    if winner is not None:
        report(result)
    else:
        console.print(f"wrote {args.out}: join it with the seed-0 run's file (--combine)")


def tests_of(result: dict[str, Any]) -> dict[str, Any]:
    """Paired tests of the winner against the baseline: on seed 0 per variant, and on the mean
    over the seeds both trained with, for all test users and the recently-searching ones."""
    per_user = {label: {int(s): np.asarray(v) for s, v in by_seed.items()}
                for label, by_seed in result["per_user"].items()}
    mask = np.asarray(result["recent_search_users"], dtype=bool)
    base, winner = per_user[BASELINE], per_user[result["winner"]]
    shared = sorted(set(base) & set(winner))
    tests: dict[str, Any] = {"seeds": shared,
                             "winner_all_users": paired([winner[s] for s in shared], [base[s] for s in shared]),
                             "winner_recent_searchers": paired([winner[s] for s in shared], [base[s] for s in shared],
                                                               mask),
                             "recent_searchers": int(mask.sum()), "test_users": int(mask.size)}
    if 0 in base:
        tests["seed0"] = {label: paired([values[0]], [base[0]]) for label, values in per_user.items()
                          if label != BASELINE and 0 in values}
    return tests


def combine(paths: list[Path], out: Path) -> None:
    """Join runs over disjoint seeds (the same data and winner) into one result."""
    parts = sorted((json.loads(p.read_text()) for p in paths), key=lambda part: part["winner"] is None)
    merged = parts[0]
    if merged["winner"] is None:
        raise SystemExit("cannot combine: no file holds the seed-0 run that chooses the winner")
    for part in parts[1:]:
        if _same_data(part) != _same_data(merged) or merged["winner"] not in (part["candidates"] or [part["winner"]]):
            raise SystemExit(f"cannot combine: other data, or no runs of the winner {merged['winner']!r}, in a part")
        for label, by_seed in part["runs"].items():
            merged["runs"].setdefault(label, {}).update(by_seed)
        for label, by_seed in part["per_user"].items():
            merged["per_user"].setdefault(label, {}).update(by_seed)
    merged["settings"]["seeds"] = sorted({int(s) for by_seed in merged["runs"].values() for s in by_seed})
    merged["combined_from"] = [{"created": part["created"],
                                "seeds": sorted({seed for runs in part["runs"].values() for seed in runs})}
                               for part in parts]
    merged["tests"] = tests_of(merged)
    write_result(merged, out)
    report(merged)


def write_result(result: dict[str, Any], path: Path) -> None:
    """The result as indented JSON, its long per-user arrays one line each (rounded to 1e-6)."""
    arrays = {"per_user": {label: {seed: [round(v, 6) for v in values] for seed, values in by_seed.items()}
                           for label, by_seed in result["per_user"].items()},
              "recent_search_users": result["recent_search_users"]}
    text = json.dumps({**result, **{key: f"@{key}@" for key in arrays}}, indent=1)
    for key, value in arrays.items():
        text = text.replace(f'"@{key}@"', json.dumps(value, separators=(",", ":")))
    path.write_text(text + "\n")


def _same_data(result: dict[str, Any]) -> dict[str, Any]:
    """What must match for two runs to be joined: the data, not how long its embedding took."""
    return {key: value for key, value in result["data"].items() if key != "embedding_seconds"}


def report(result: dict[str, Any]) -> None:
    table = Table(title="Synthetic e-commerce, P-seq: test NDCG@10 by seed")
    table.add_column("user tower")
    seeds = result["settings"]["seeds"]
    for seed in seeds:
        table.add_column(f"seed {seed}", justify="right")
    table.add_column(f"valid (seed {seeds[0]})", justify="right")
    for label, by_seed in result["runs"].items():
        cells = [f"{by_seed[str(s)]['test_ndcg@10']:.4f}" if str(s) in by_seed else "" for s in seeds]
        first = by_seed.get(str(seeds[0]))
        table.add_row(label + (" (winner)" if label == result["winner"] else ""), *cells,
                      f"{first['valid_ndcg@10']:.4f}" if first else "")
    console.print(table)
    tests = result["tests"]
    for key, title in (("winner_all_users", "all test users"),
                       ("winner_recent_searchers", f"{tests['recent_searchers']} users who searched within the "
                                                   f"hour before their test event")):
        t = tests[key]
        console.print(f"{result['winner']} vs {BASELINE}, {title}, mean over seeds {tests['seeds']}: "
                      f"{t['mean_a']:.4f} vs {t['mean_b']:.4f}, diff {t['mean_diff']:+.4f} "
                      f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}], t-test p = {t['t_pvalue']:.2g}, "
                      f"Wilcoxon p = {t['wilcoxon_pvalue']:.2g}")


if __name__ == "__main__":
    main()
