"""``text_languages.json``: whether each bundled text model matches a Chinese catalogue to its English twin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import table, verdict
from benchmarks.tables.section import Section


def _model_rows(data: Mapping[str, Any]) -> list[list[str]]:
    """One row per model and task: top-1 beside chance, AUC, mean rank."""
    rows = []
    for name, measured in data["models"].items():
        for task_name, task in measured["tasks"].items():
            rows.append([f"`{name}`", task_name, f"{task['top1']:.3f}", f"{task['chance_top1']:.4f}",
                         f"{task['auc']:.3f}", f"{task['mean_rank']:.1f}"])
    return rows


def _speed_rows(data: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for name, measured in data["models"].items():
        rates = measured["items_per_second"]
        rows.append([f"`{name}`", measured["model"]["name"], measured["model"]["languages"],
                     *(f"{rates[key]:,.0f}" for key in ("en title", "zh title", "en description", "zh description")),
                     f"{measured['load_average_before'][0]:.2f}"])
    return rows


def _examples(measured: Mapping[str, Any]) -> str:
    return "; ".join(f"{e['zh']} → nearest *{e['nearest_en']}* (its twin: *{e['en']}*)"
                     for e in measured["examples"][:3])


def render(data: Mapping[str, Any]) -> Section:
    settings = data["settings"]
    verdicts = "; ".join(f"`{name}` {verdict(m['target']['met'])} (top-1 {m['target']['top1']:.3f})"
                         for name, m in data["models"].items())
    examples = "\n".join(f"- `{name}`: {_examples(m)}" for name, m in data["models"].items())
    body = "\n\n".join([
        f"{settings['items']:,} products, the same catalogue in English and in Chinese (seed {settings['seed']}; "
        f"{settings['distinct_titles']:,} distinct title pairs); titles without their shared model codes.",
        table(["model", "task (query → its counterpart among all targets)", "top-1", "chance top-1", "AUC",
               "mean rank"], _model_rows(data), "llrrrr"),
        f"Embedding throughput (items/s, {data['machine']['torch_threads']} torch thread):",
        table(["model", "weights", "languages", "en titles", "zh titles", "en descriptions", "zh descriptions",
               "load average before"], _speed_rows(data), "lllrrrrr"),
        f"Nearest English title of the first Chinese titles:\n\n{examples}",
        f"Target — {data['rule']}: {verdicts}.",
    ])
    return Section(
        title="Text in two languages",
        measures="Whether each bundled sentence model maps a Chinese product title to its English twin, beside "
                 "the same model's monolingual matching (title → description) and chance.",
        command="python benchmarks/text_languages.py",
        body=body,
    )
