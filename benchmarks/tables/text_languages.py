"""``text_languages.json``: whether the bundled text model matches a Chinese catalogue to its English twin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import table, verdict
from benchmarks.tables.section import Section


def render(data: Mapping[str, Any]) -> Section:
    rows = [[name, f"{task['top1']:.3f}", f"{task['chance_top1']:.4f}", f"{task['auc']:.3f}",
             f"{task['mean_rank']:.1f}"] for name, task in data["tasks"].items()]
    speed = ", ".join(f"{name} {rate:,.0f}" for name, rate in data["items_per_second"].items())
    examples = "; ".join(f"{e['zh']} → nearest *{e['nearest_en']}* (its twin: *{e['en']}*)"
                         for e in data["examples"][:3])
    target = data["target"]
    body = "\n\n".join([
        f"{data['settings']['items']:,} products, the same catalogue in English and in Chinese (seed "
        f"{data['settings']['seed']}); titles without their shared model codes. Model: {data['model']['name']} "
        f"({data['model']['languages']}).",
        table(["task (query → its counterpart among all targets)", "top-1", "chance top-1", "AUC", "mean rank"], rows,
              "lrrrr"),
        f"Embedding throughput (items/s, {data['machine']['torch_threads']} torch thread, load average "
        f"{data['machine']['load_average_before'][0]:.2f}): {speed}. Examples: {examples}.",
        f"Target — {target['rule']}: {verdict(target['met'])} (top-1 {target['top1']:.3f}).",
    ])
    return Section(
        title="Text in two languages",
        measures="Whether the bundled sentence model maps a Chinese product title to its English twin, beside "
                 "the same model's monolingual matching (title → description) and chance.",
        command="python benchmarks/text_languages.py",
        body=body,
    )
