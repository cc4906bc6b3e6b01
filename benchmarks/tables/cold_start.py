"""``cold_start.json``: pretrained text vectors for items nobody has interacted with yet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import fixed, pvalue, table, times, verdict
from benchmarks.tables.section import Headline, Section

TOWERS = {"text": "text (text item tower)", "no text": "no text (dense item tower)"}


def _results_table(data: Mapping[str, Any]) -> str:
    rows = []
    for proto in data["protocols"]:
        runs = proto["runs"]
        popularity = runs["text"]["popularity"]
        for name in ("text", "no text"):
            r = runs[name]
            rows.append([proto["label"], TOWERS[name], f"{r['test']['hit']:.4f}", f"{r['test']['ndcg']:.4f}",
                         times(r["test"]["hit"] / popularity["hit"], 1), f"{r['epochs_run']} (best {r['best_epoch']})",
                         f"{r['run_seconds']:.0f}"])
        rows.append([proto["label"], "popularity (same run)", f"{popularity['hit']:.4f}", f"{popularity['ndcg']:.4f}",
                     times(1.0, 1), "", ""])
        if "random" in runs["text"]:
            rand = runs["text"]["random"]
            rows.append([proto["label"], "random (5 seeds)", f"{rand['hit']:.4f}", f"{rand['ndcg']:.4f}",
                         times(rand["hit"] / popularity["hit"], 1), "", ""])
    return table(["protocol", "model", "HR@10", "NDCG@10", "HR@10 ÷ popularity", "epochs", "run s"], rows,
                 "llrrrrr")


def _targets_table(data: Mapping[str, Any]) -> str:
    rows = []
    for proto in data["protocols"]:
        target, paired = proto["target"], proto["paired_text_vs_no_text"]
        if "ratio_to_popularity" in target:
            figure = (f"{times(target['ratio_to_popularity'], 1)} popularity, "
                      f"{times(target['ratio_to_random'], 1)} random")
        else:
            figure = f"Δ NDCG@10 {target['difference']:+.4f}"
        rows.append([proto["label"], target["rule"], figure,
                     f"{paired['metric']} {paired['mean_a']:.4f} vs {paired['mean_b']:.4f}, "
                     f"Wilcoxon p = {pvalue(paired['wilcoxon_pvalue'])} (n = {paired['n']:.0f})",
                     verdict(target["met"])])
    return table(["protocol", "target", "figure", "paired test, text vs no text (per user)", ""], rows)


def _embedding(data: Mapping[str, Any]) -> str:
    emb = data["embedding"]
    neighbours = ", ".join(f"{n['text'].split('. ')[0]} ({n['cosine']:.3f})" for n in emb["neighbours"])
    return (f"Text embedding: {emb['items']:,} items ({' + '.join(emb['fields'])}, {emb['dimension']}-d), "
            f"**{emb['items_per_second']:.0f} items/s** on {emb['torch_threads']} torch thread "
            f"({emb['embed_s']:.2f} s inside the encoder; model load {emb['model_load_s']:.2f} s; "
            f"{emb['build_s_with_store_writes']:.2f} s with the store writes) at load average "
            f"{emb['load_average_before'][0]:.2f}; the issue's quiet-machine figure, not measured here: "
            f"~{emb['quiet_machine_items_per_second_from_issue']:.0f} items/s. Nearest neighbours of "
            f"*{emb['anchor']['text']}* (cosine): {neighbours}.")


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    cold = next((p for p in data["protocols"] if p["protocol"] == "cold"), None)
    if cold is None:
        return ()
    r = cold["runs"]["text"]
    return (Headline("cold start (ml-100k)", "HR@10 on items with no training events, text item tower",
                     f"{r['test']['hit']:.4f}", f"popularity {r['popularity']['hit']:.4f} "
                     f"({times(cold['target']['ratio_to_popularity'], 1)}); random {r['random']['hit']:.4f}",
                     f"{cold['target']['rule']}: {verdict(cold['target']['met'])}"),)


def render(data: Mapping[str, Any]) -> Section:
    settings = data["settings"]
    cold = next((p for p in data["protocols"] if p["protocol"] == "cold"), None)
    held_out = (f" P-cold holds out {cold['runs']['text']['cold_items']} items with all their events and ranks "
                f"them among themselves for the {cold['runs']['text']['test_users']} users who had them."
                if cold else "")
    body = "\n\n".join([
        f"One seed ({','.join(str(s) for s in settings['seeds'])}, split seed {settings['split_seed']}), "
        f"at most {settings['epochs']} epochs and {fixed(settings['max_minutes'], 1)} min per run, dim "
        f"{settings['dim']}, {data['total_seconds'] / 60:.0f} min in all.{held_out} The warm rows train the "
        "tuned P-gen and P-seq settings with the item tower over ids + attributes, with or without the "
        "projected text vector.",
        _results_table(data), "**Targets**", _targets_table(data), _embedding(data),
    ])
    return Section(
        title="Cold start with text vectors",
        measures="Items encoded from their text (title + genres through all-MiniLM-L6-v2) against the same "
                 "model without text, popularity and random: on cold items (P-cold) and whether text costs "
                 "anything on warm ones (P-gen, P-seq), with paired per-user tests.",
        command="python benchmarks/cold_start.py",
        body=body,
        headline=_headline(data),
    )
