"""``searches.json``: whether the user tower reading recent searches raises NDCG@10 (synthetic e-commerce)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from benchmarks.tables.markdown import pvalue, table, verdict
from benchmarks.tables.section import Headline, Section

BASELINE = "no searches"


def _mean_over_seeds(runs: Mapping[str, Mapping[str, Any]], key: str = "test_ndcg@10") -> tuple[float, float, int]:
    values = [run[key] for run in runs.values()]
    return float(np.mean(values)), float(np.std(values)), len(values)


def _variants_table(data: Mapping[str, Any]) -> str:
    seeds = [str(s) for s in data["settings"]["seeds"]]
    first = seeds[0]
    seed0 = data["tests"].get("seed0", {})
    rows = []
    for label, runs in data["runs"].items():
        mean, std, n = _mean_over_seeds(runs)
        test0 = seed0.get(label)
        rows.append([label + (" (winner)" if label == data["winner"] else ""),
                     f"{runs[first]['valid_ndcg@10']:.4f}" if first in runs else "",
                     f"{runs[first]['test_ndcg@10']:.4f}" if first in runs else "",
                     "" if test0 is None else f"{test0['mean_diff']:+.4f} (p = {pvalue(test0['wilcoxon_pvalue'])})",
                     f"{mean:.4f} ± {std:.4f} ({n})"])
    return table(["user tower (`model.searches`)", f"valid NDCG@10 (seed {first})", f"test (seed {first})",
                  f"vs {BASELINE} (seed {first})", "test, mean ± std (seeds)"], rows, "lrrrr")


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    tests = data["tests"]
    everyone = tests["winner_all_users"]
    return (Headline(
        "what users search for (synthetic e-commerce)",
        f"P-seq NDCG@10 with the user tower reading recent searches ({data['winner']}, chosen on validation), "
        f"mean of {len(tests['seeds'])} seeds",
        f"{everyone['mean_a']:.4f}",
        f"without searches {everyone['mean_b']:.4f} (p = {pvalue(everyone['wilcoxon_pvalue'])})",
        f"above, p < 0.05: {verdict(everyone['mean_diff'] > 0 and everyone['wilcoxon_pvalue'] < 0.05)}"),)


def render(data: Mapping[str, Any]) -> Section:
    facts, settings, tests = data["data"], data["settings"], data["tests"]
    paired = []
    for key, who in (("winner_all_users", f"all {tests['test_users']:,} test users"),
                     ("winner_recent_searchers", f"the {tests['recent_searchers']:,} who searched within the hour "
                                                 "before their test event")):
        t = tests[key]
        paired.append([who, f"{t['mean_a']:.4f}", f"{t['mean_b']:.4f}", f"{t['mean_diff']:+.4f}",
                       f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}]", pvalue(t["t_pvalue"]),
                       pvalue(t["wilcoxon_pvalue"])])
    body = "\n\n".join([
        f"Synthetic e-commerce: {facts['users']:,} shoppers, {facts['items']:,} products, {facts['events']:,} events "
        f"and {facts['searches']:,} searches ({facts['distinct_queries']:,} distinct queries; "
        f"{facts['search_rate']:.0%} of views follow a search for the product, {facts['search_noise']:.0%} of "
        f"searches name another product), data seed {facts['data_seed']}; items and queries embedded with "
        f"all-MiniLM-L6-v2 in {facts['embedding_seconds']:.0f} s. P-seq; the dense two-tower model (user: id + "
        f"history mean; item: id, attributes, text vector), full softmax, pairs training, at most "
        f"{settings['epochs']} epochs with early stopping on validation. Every variant trains with seed "
        f"{settings['seeds'][0]}; the best on validation ({data['winner']}) trains again, beside the baseline, on "
        f"the other seeds.",
        _variants_table(data),
        f"**{data['winner']} vs {BASELINE}**, each user's mean test NDCG@10 over seeds "
        f"{', '.join(map(str, tests['seeds']))}, paired:",
        table(["users", "with searches", "without", "difference", "95% CI", "t-test p", "Wilcoxon p"], paired,
              "lrrrrrr"),
    ])
    return Section(
        title="What users search for",
        measures="Whether feeding the user tower the pooled vector of the user's recent searches (queries embedded "
                 "by the item text model) raises next-item NDCG@10, against the same model without them, with "
                 "paired per-user tests.",
        command="python benchmarks/searches.py",
        body=body,
        headline=_headline(data),
    )
