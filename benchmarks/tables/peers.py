"""``peers.json``: recengine beside RecBole 1.2.1 on identical MovieLens-100K split files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.tables.markdown import count, fixed, table, times, verdict
from benchmarks.tables.section import Headline, Section

METRICS = ("ndcg@10", "recall@10", "hit@10", "mrr@10")
CLOSED_FORM = ("Pop", "EASE", "ease")  # fitted once: no gradient epochs to count
TITLES = {"gen": "P-gen (random 80/10/10 per user, training items masked)",
          "seq": "P-seq (leave-last-out by time, unmasked: RecBole's convention)"}


def _mean(values: float | Sequence[float]) -> float:
    if isinstance(values, (int, float)):
        return float(values)
    return sum(values) / max(len(values), 1)


def _rows(data: Mapping[str, Any], protocol: str) -> list[list[str]]:
    out = []
    for r in data["results"]:
        if r["protocol"] != protocol or "error" in r:
            continue
        t = r["test"]
        out.append(["RecBole 1.2.1" if r["side"] == "recbole" else "recengine", r["label"],
                    *(f"{t[m]:.4f}" for m in METRICS), fixed(_mean(r["epoch_seconds"])),
                    count(r["samples_per_second"]),
                    "closed form" if r["label"] in CLOSED_FORM else f"{r['best_epoch']}/{r['epochs_run']}",
                    f"{r['time_to_best_seconds']:.0f}", f"{r['peak_rss_mb']:.0f}"])
    return out


HEADERS = ["library", "model", "NDCG@10", "Recall@10", "Hit@10", "MRR@10", "s/epoch", "samples/s",
           "best/run epochs", "s to best", "peak MB"]


def _ratios(data: Mapping[str, Any]) -> str:
    rows = [[f"{r['ours']} / {r['recbole']} (P-{r['protocol']})", fixed(r["ndcg@10_ratio"]),
             times(r["throughput_ratio"], 1), fixed(r["time_to_best_ratio"]), fixed(r["peak_memory_ratio"])]
            for r in data["ratios"]]
    return table(["pair (recengine / RecBole)", "NDCG@10 ratio", "samples/s ratio", "time-to-best ratio",
                  "peak-memory ratio"], rows, "lrrrr")


def _targets(data: Mapping[str, Any]) -> str:
    rows = []
    for t in data["targets"]:
        speed = f", throughput {times(t['throughput_ratio'], 1)}" if "throughput_ratio" in t else ""
        rows.append([t["target"], f"recengine {t['ours']:.4f}, RecBole {t['recbole']:.4f}{speed}", verdict(t["met"])])
    return table(["target", "figures", ""], rows)


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    pair = next((r for r in data["ratios"] if r["protocol"] == "seq"), None)
    if pair is None:
        return ()
    ours = next(r for r in data["results"] if r["protocol"] == "seq" and r["label"] == pair["ours"])
    theirs = next(r for r in data["results"] if r["protocol"] == "seq" and r["label"] == pair["recbole"])
    target = next((t for t in data["targets"] if t["target"].startswith(f"{pair['ours']} ")), None)
    return (Headline("vs RecBole 1.2.1 (ml-100k)", f"P-seq: {pair['ours']} vs RecBole's {pair['recbole']}",
                     f"NDCG@10 {ours['test']['ndcg@10']:.4f}; {count(ours['samples_per_second'])} samples/s",
                     f"NDCG@10 {theirs['test']['ndcg@10']:.4f}; {count(theirs['samples_per_second'])} samples/s "
                     f"({times(pair['throughput_ratio'], 1)})",
                     "—" if target is None else f"≥ 3× samples/s at ≥ NDCG@10: {verdict(target['met'])}"),)


def render(data: Mapping[str, Any]) -> Section:
    caps = data["caps"]
    recbole = next(r for r in data["results"] if r["side"] == "recbole")
    ours = next(r for r in data["results"] if r["side"] == "ours")
    split = ", ".join(f"{k} {v:,}" for k, v in data["split_rows"]["gen"].items())
    parts = [f"Identical split files for both libraries (P-gen rows: {split}), embedding size "
             f"{recbole['settings']['embedding_size']}, one seed each (RecBole's {recbole['settings']['seed']}, "
             f"recengine's training seed {ours['config']['train']['seed']}); training caps: BPR pair {caps['bpr']:g} "
             f"min, SASRec pair {caps['sasrec']:g} min (checked after each validation), early stopping on validation "
             f"NDCG@10 (RecBole stopping_step {recbole['settings']['stopping_step']}, recengine its patience); "
             f"{data['total_minutes']:.0f} min in all. RecBole's environment: "
             f"{', '.join(data['recbole_environment'])}. "
             "The script also writes `benchmarks/results/peers.md`, its own report of the same run."]
    for protocol in ("gen", "seq"):
        parts += [f"**{TITLES[protocol]}**", table(HEADERS, _rows(data, protocol), "llrrrrrrrrr")]
    parts += ["**Matched pairs**", _ratios(data), "**Targets**", _targets(data)]
    return Section(
        title="Side by side with RecBole 1.2.1",
        measures="recengine's pipelines and RecBole's models trained on exactly the same held-out items "
                 "(recengine's splits written as RecBole benchmark files), each in its own process for honest "
                 "peak memory: quality, training throughput, time to the best epoch and memory, pair by pair.",
        command="python benchmarks/peers/vs_recbole.py",
        body="\n\n".join(parts),
        headline=_headline(data),
    )
