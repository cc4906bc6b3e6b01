"""``quality.json``: test metrics of every built-in pipeline on MovieLens-100K beside popularity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import fixed, mean_std, pvalue, table, times, verdict
from benchmarks.tables.section import Headline, Section

METRICS = ("ndcg@10", "recall@10", "hit@10", "mrr@10")
TITLES = {"gen": "P-gen (random 80/10/10 per user, split seed 2020, training items excluded)",
          "seq": "P-seq (leave-last-out by time; unmasked = RecBole's convention, masked = seen items excluded)"}


def _by_protocol(data: Mapping[str, Any], protocol: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The protocol's pipelines, best test NDCG@10 first."""
    found = [(name, r) for name, r in data["results"].items() if r["protocol"] == protocol]
    return sorted(found, key=lambda item: -item[1]["summary"]["test"]["ndcg@10"][0])


def _gen_table(data: Mapping[str, Any]) -> str:
    rows: list[list[str]] = []
    popularity = None
    for name, r in _by_protocol(data, "gen"):
        s = r["summary"]
        popularity = s["popularity"]
        rows.append([f"{name}: {r['description']}", *(mean_std(s["test"][m]) for m in METRICS),
                     times(s["test"]["ndcg@10"][0] / s["popularity"]["ndcg@10"][0]), fixed(s["epoch_seconds"][0])])
    if popularity is not None:
        rows.append(["popularity (same run)", *(mean_std(popularity[m]) for m in METRICS), times(1.0), ""])
    for ref in data["references"].get("gen", []):
        rows.append([f"*{ref['name']} (reference)*", fixed(ref["ndcg@10"], 4), "", "", "", "", ""])
    headers = ["pipeline", "NDCG@10", "Recall@10", "Hit@10", "MRR@10", "NDCG@10 ÷ popularity", "s/epoch"]
    return table(headers, rows, "lrrrrrr")


def _seq_table(data: Mapping[str, Any]) -> str:
    rows: list[list[str]] = []
    popularity: tuple[Any, Any] | None = None
    for name, r in _by_protocol(data, "seq"):
        s = r["summary"]
        popularity = (s["popularity_unmasked"], s["popularity"])
        rows.append([f"{name}: {r['description']}", mean_std(s["test_unmasked"]["ndcg@10"]),
                     mean_std(s["test"]["ndcg@10"]), mean_std(s["test_unmasked"]["hit@10"]),
                     mean_std(s["test"]["hit@10"]), times(s["test"]["ndcg@10"][0] / s["popularity"]["ndcg@10"][0]),
                     fixed(s["epoch_seconds"][0])])
    if popularity is not None:
        unmasked, masked = popularity
        rows.append(["popularity (same run)", mean_std(unmasked["ndcg@10"]), mean_std(masked["ndcg@10"]),
                     mean_std(unmasked["hit@10"]), mean_std(masked["hit@10"]), times(1.0), ""])
    for ref in data["references"].get("seq", []):
        masked_ref = ref.get("convention") == "masked"
        value = fixed(ref["ndcg@10"], 4)
        rows.append([f"*{ref['name']} (reference)*", "" if masked_ref else value, value if masked_ref else "",
                     "", "", "", ""])
    headers = ["pipeline", "NDCG@10 unmasked", "NDCG@10 masked", "Hit@10 unmasked", "Hit@10 masked",
               "masked NDCG@10 ÷ popularity", "s/epoch"]
    return table(headers, rows, "lrrrrrr")


def _paired_table(data: Mapping[str, Any]) -> str:
    rows = []
    for t in data.get("paired_tests", []):
        rows.append([f"P-{t['protocol']} ({t['convention']})", t["best"],
                     f"{t['vs_popularity']['mean_a']:.4f} vs {t['vs_popularity']['mean_b']:.4f}, "
                     f"p = {pvalue(t['vs_popularity']['wilcoxon_pvalue'])}",
                     t["runner_up"], f"{t['vs_runner_up']['mean_a']:.4f} vs {t['vs_runner_up']['mean_b']:.4f}, "
                                     f"p = {pvalue(t['vs_runner_up']['wilcoxon_pvalue'])}"])
    return table(["protocol", "best", "vs popularity (Wilcoxon, per user)", "runner-up", "vs runner-up"], rows)


def _comparisons_table(data: Mapping[str, Any]) -> str:
    """Pipelines tested against the ones their entry names (``paired_with``: hstu against sasrec)."""
    rows = []
    for c in data.get("comparisons", []):
        for which, label in (("first_seed", "seed 0"), ("seed_mean", "per user, mean over seeds")):
            p = c[which]
            rows.append([f"P-{c['protocol']} ({c['convention']})", f"{c['a']} vs {c['b']}", label,
                         f"{p['mean_a']:.4f} vs {p['mean_b']:.4f}", f"{p['mean_diff']:+.4f}",
                         f"[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}]", pvalue(p["t_pvalue"]),
                         pvalue(p["wilcoxon_pvalue"])])
    return table(["protocol", "pipelines", "NDCG@10 per user", "means", "difference", "95% bootstrap interval",
                  "t-test p", "Wilcoxon p"], rows, "lllrrrrr")


def _merged_note(data: Mapping[str, Any]) -> str:
    merged = data.get("merged")
    if not merged:
        return ""
    return (f"A partial re-run (`--merge`): {', '.join(merged['ran'])} ran in the run dated above; "
            f"{', '.join(merged['kept'])} are kept unchanged from the run of "
            f"{merged['kept_from_run'][:16].replace('T', ' ')} UTC (load average "
            f"{merged['kept_run_machine']['load_average_start'][0]:.2f} at its start). Paired tests of a protocol "
            "compare only the pipelines run in the same run.")


def _targets_table(data: Mapping[str, Any]) -> str:
    rows = [[t["target"], fixed(t["value"], 4), fixed(t["threshold"], 4), verdict(t["met"])]
            for t in data["targets"]]
    return table(["target", "value", "threshold", ""], rows, "lrrl")


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    """One row: the best pipeline of each protocol beside popularity, with the first target its figure decides."""
    figures, ours, baselines, targets = [], [], [], []
    for protocol, label in (("gen", "P-gen NDCG@10"), ("seq", "P-seq NDCG@10 (masked)")):
        ranked = _by_protocol(data, protocol)
        if not ranked:
            continue
        name, best = ranked[0]
        s = best["summary"]
        value = s["test"]["ndcg@10"][0]
        target = next((t for t in data["targets"] if t["target"].startswith(f"P-{protocol}")
                       and abs(t["value"] - value) < 1e-9), None)
        figures.append(f"{label} ({name})")
        ours.append(f"{value:.4f}")
        baselines.append(f"{s['popularity']['ndcg@10'][0]:.4f}")
        targets.append("—" if target is None else (
            f"> {target['threshold']:.4f} ({target['target'].split('>')[-1].strip()}): {verdict(target['met'])}"))
    if not figures:
        return ()
    return (Headline("quality (ml-100k)", "; ".join(figures) + ", best pipeline of each", "; ".join(ours),
                     "popularity " + "; ".join(baselines), "; ".join(targets)),)


def render(data: Mapping[str, Any]) -> Section:
    seeds = ",".join(str(s) for s in data["seeds"])
    parts = [
        f"Test metrics, mean ± std over training seeds {seeds}; {data['budget']['total_minutes']:.0f} min in all, "
        f"{data['machine']['torch_threads']} torch thread. RecBole rows are references measured elsewhere "
        "(DESIGN §6), not in this run; popularity is this run's.",
        _merged_note(data),
        f"**{TITLES['gen']}**", _gen_table(data),
        f"**{TITLES['seq']}**", _seq_table(data),
        "**Paired tests** (per-user NDCG@10, seed 0)", _paired_table(data),
    ]
    if data.get("comparisons"):
        parts += ["**Named paired tests** (a pipeline against the one its entry names)", _comparisons_table(data)]
    body = "\n\n".join([*(part for part in parts if part), "**Targets**", _targets_table(data)])
    return Section(
        title="Quality on MovieLens-100K",
        measures="Full-ranking test metrics (RecBole's definitions) of every sensible built-in pipeline on "
                 "ml-100k under P-gen and P-seq, each beside the popularity baseline of the same split and run; "
                 "every hyper-parameter chosen on validation NDCG@10 (the `tuning` notes in the script).",
        command="python benchmarks/quality.py",
        body=body,
        headline=_headline(data),
    )
