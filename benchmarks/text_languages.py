"""Does a text model understand a Chinese catalogue? A bilingual check of both bundled models.

Run ``python benchmarks/text_languages.py`` (about three minutes). The e-commerce generator makes the
same catalogue in English and in Chinese from one seed (``--language zh``: the same products,
word for word), so every Chinese title has a known English counterpart (titles without their
model codes, "S280", which both languages share and would match by themselves). For each model
(``text``: all-MiniLM-L6-v2, English only; ``text-multilingual``: universal-sentence-encoder-
multilingual v3) and each Chinese title the benchmark ranks all English titles by cosine: top-1
accuracy (the counterpart is the nearest) and AUC (the share of other products the counterpart
beats). The same-run baselines: English title → English description of the same product (the
model's monolingual ability on this text), Chinese title → Chinese description, and chance
(top-1 1/N, AUC 0.5). Embedding throughput is measured for each model and language. The issue's
target: each Chinese title's nearest neighbour is its English counterpart. Results go to
``benchmarks/results/text_languages.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recengine.plugins.domains import ecommerce

RESULTS = Path(__file__).resolve().parent / "results" / "text_languages.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000, help="products in the bilingual catalogue")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def catalogue(items: int, seed: int, language: str) -> dict[str, list[str]]:
    """Titles and descriptions of the generator's catalogue in ``language`` (a few events: the items need them)."""
    frame = ecommerce.generate(50, items, 200, seed, language=language).items
    # titles end in a model code ("S280") both languages share: cut it, or the codes match, not the words
    return {"item_id": frame["item_id"].to_list(), "title": [t.rsplit(" ", 1)[0] for t in frame["title"].to_list()],
            "description": frame["description"].to_list()}


def retrieval(queries: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Query i's counterpart is target i: top-1 accuracy, mean AUC against the other targets, mean rank."""
    similarity = queries @ targets.T
    own = np.diag(similarity)
    beaten = (similarity < own[:, None]).sum(axis=1)  # other targets scored below the counterpart
    others = targets.shape[0] - 1
    rank = 1 + (similarity > own[:, None]).sum(axis=1)
    return {"top1": float((rank == 1).mean()), "auc": float((beaten / others).mean()),
            "mean_rank": float(rank.mean()), "chance_top1": 1.0 / targets.shape[0], "chance_auc": 0.5}


MODELS = {  # registered text encoder -> (model, languages)
    "text": ("all-MiniLM-L6-v2", "English"),
    "text-multilingual": ("universal-sentence-encoder-multilingual-3 (6-bit embedding table)",
                          "16 languages, among them Chinese and English"),
}


def timed_embed(encoder: Any, texts: list[str]) -> tuple[np.ndarray, float]:
    begin = time.perf_counter()
    vectors = encoder.embed_texts(texts)
    return vectors, len(texts) / (time.perf_counter() - begin)


def measure(name: str, en: dict[str, list[str]], zh: dict[str, list[str]]) -> dict[str, Any]:
    """One text model's cross-lingual and monolingual retrieval and its throughput."""
    from recengine.plugin_manager import get_plugin_manager

    encoder = get_plugin_manager().get("encoders", name)
    encoder.load_model()
    encoder.embed_texts(["warm-up"] * 8)  # first call allocates; keep it out of the timing
    load_before = [round(x, 2) for x in os.getloadavg()]
    vectors, throughput = {}, {}
    for language, texts in (("en", en), ("zh", zh)):
        for field in ("title", "description"):
            vectors[(language, field)], throughput[f"{language} {field}"] = timed_embed(encoder, texts[field])
    tasks = {
        "zh title -> en title (cross-lingual)": retrieval(vectors[("zh", "title")], vectors[("en", "title")]),
        "en title -> zh title (cross-lingual)": retrieval(vectors[("en", "title")], vectors[("zh", "title")]),
        "en title -> en description (baseline)": retrieval(vectors[("en", "title")], vectors[("en", "description")]),
        "zh title -> zh description (baseline)": retrieval(vectors[("zh", "title")], vectors[("zh", "description")]),
    }
    examples = [{"zh": zh["title"][i], "en": en["title"][i],
                 "nearest_en": en["title"][int(np.argmax(vectors[("en", "title")] @ vectors[("zh", "title")][i]))]}
                for i in range(5)]
    cross = tasks["zh title -> en title (cross-lingual)"]
    model, languages = MODELS[name]
    return {"model": {"encoder": name, "name": model, "weights": encoder.text_model, "languages": languages},
            "load_average_before": load_before, "items_per_second": {k: round(v, 1) for k, v in throughput.items()},
            "tasks": tasks, "examples": examples, "target": {"top1": cross["top1"], "met": cross["top1"] >= 0.99}}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    en, zh = catalogue(args.items, args.seed, "en"), catalogue(args.items, args.seed, "zh")
    assert en["item_id"] == zh["item_id"]  # one catalogue, two languages
    twins = len(set(zip(en["title"], zh["title"])))
    results: dict[str, Any] = {
        "benchmark": "text_languages", "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
        "settings": {"items": args.items, "seed": args.seed, "distinct_titles": twins},
        "rule": "each Chinese title's nearest English title is its counterpart (top-1 = 1.0)",
        "models": {name: measure(name, en, zh) for name in MODELS},
        "total_seconds": 0.0,
    }
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    for name, measured in results["models"].items():
        print(f"{name} ({measured['model']['name']}):")
        for task_name, task in measured["tasks"].items():
            print(f"  {task_name:<40} top-1 {task['top1']:.3f} (chance {task['chance_top1']:.4f}), "
                  f"AUC {task['auc']:.3f}, mean rank {task['mean_rank']:.1f} of {args.items}")
        for field, rate in measured["items_per_second"].items():
            print(f"  embedding {field:<16} {rate:>8.1f} items/s")
        for example in measured["examples"]:
            print(f"    {example['zh']}  ->  nearest {example['nearest_en']!r} (counterpart {example['en']!r})")
        print(f"  target ({results['rule']}): {'met' if measured['target']['met'] else 'MISSED'}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
