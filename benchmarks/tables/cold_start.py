"""``cold_start.json``: text vectors in the item tower, fusion by fusion, on ml-100k and synthetic news."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import mean_std, pvalue, table, times, verdict
from benchmarks.tables.section import Headline, Section

BASELINE = "ids + attributes"


def _first(proto: Mapping[str, Any]) -> str:
    return str(proto["winner_seeds"][0])


def _variants_table(proto: Mapping[str, Any], ceiling: Mapping[str, Any] | None = None) -> str:
    first, metric = _first(proto), proto["metric"]
    rows = []
    for label, by_seed in proto["runs"].items():
        r = by_seed[first]
        paired = proto["paired_first_seed"].get(label)
        versus = "" if paired is None else (f"{paired['mean_diff']:+.4f} (p = {pvalue(paired['wilcoxon_pvalue'])})")
        name = f"**{label}** (winner)" if label == proto["winner"] else label
        if "weight_of_baseline" in r:
            name += f", weight {r['weight_of_baseline']:.1f} on the baseline"
        rows.append([name, f"{r['valid_ndcg@10']:.4f}", f"{r['test']['hit']:.4f}", f"{r['test']['ndcg']:.4f}", versus,
                     f"{r['epochs_run']} (best {r['best_epoch']})", f"{r['run_seconds']:.0f}"])
        if "text_only" in r:  # the blend's text member on its own
            member = r["text_only"]
            rows.append(["↳ its text-only member alone", f"{member['valid_ndcg@10']:.4f}",
                         f"{member['test']['hit']:.4f}", f"{member['test']['ndcg']:.4f}", "", "", ""])
    base = proto["runs"][BASELINE][first]
    for name in ("popularity", "random"):
        if name in base:
            rows.append([f"{name} (same run)", "", f"{base[name]['hit']:.4f}", f"{base[name]['ndcg']:.4f}", "", "", ""])
    for key, what in (("topic", "topic"), ("topic_and_story", "topic and story")):
        if ceiling is not None:  # ranked by the generator's own click chances, which no tower sees
            rows.append([f"ceiling: the generator's truth, knowing the {what}", "", f"{ceiling[key]['hit']:.4f}",
                         f"{ceiling[key]['ndcg']:.4f}", "", "", ""])
    return table(["item tower", "valid NDCG@10", "test HR@10", "test NDCG@10", f"Δ {metric} vs baseline, paired",
                  "epochs", "run s"], rows, "lrrrlrr")


def _seeds_line(proto: Mapping[str, Any]) -> str:
    winner, seeds, paired = proto["winner"], proto["winner_seeds"], proto["paired_winner_seed_mean"]
    key = "hit" if proto["metric"].startswith("hit") else "ndcg"
    means = proto["seed_means"]
    target = proto["target"]
    return (f"Seeds {', '.join(map(str, seeds))}: {winner} {proto['metric']} {mean_std(means[winner][key])} vs "
            f"{BASELINE} {mean_std(means[BASELINE][key])}; per-user means over the seeds, paired "
            f"Δ {paired['mean_diff']:+.4f} (95% CI {paired['ci_low']:+.4f} to {paired['ci_high']:+.4f}), "
            f"Wilcoxon p = {pvalue(paired['wilcoxon_pvalue'])} (n = {paired['n']:.0f}). Target — "
            f"{target['rule']}: {verdict(target['met'])}.")


def _ceiling_line(proto: Mapping[str, Any], ceiling: Mapping[str, Any]) -> str:
    """What the news data allows: the truth's rankings against the towers that learn them."""
    means, winner = proto["seed_means"], proto["winner"]
    story, topic = ceiling["topic_and_story"]["ndcg"], ceiling["topic"]["ndcg"]
    return (f"Ceilings (the generator's click chances rank each reader's cold articles; neither knows an article's "
            f"hidden appeal or the visit's time, which no tower sees either): knowing the topic {topic:.4f}, which "
            f"{BASELINE} reaches to {means[BASELINE]['ndcg'][0] / topic:.0%}; knowing topic and story {story:.4f} "
            f"({times(ceiling['ratio'], 2)} the topic's), which {winner} reaches to "
            f"{means[winner]['ndcg'][0] / story:.0%}. A perfect text tower would be "
            f"{times(story / means[BASELINE]['ndcg'][0], 2)} the measured {BASELINE} tower.")


def _embedding(emb: Mapping[str, Any], what: str) -> str:
    line = (f"{what}: {emb['items']:,} items ({' + '.join(emb['fields'])}, {emb['dimension']}-d), "
            f"{emb['items_per_second']:.0f} items/s on {emb['torch_threads']} torch thread at load average "
            f"{emb['load_average_before'][0]:.2f}; mean cosine between items {emb['mean_cosine_raw']:.3f} raw, "
            f"{emb['mean_cosine_whitened']:.3f} whitened to {emb['whitened_dimension']} dimensions.")
    if "neighbours" in emb:
        neighbours = ", ".join(f"{n['text'].split('. ')[0]} ({n['cosine']:.3f})" for n in emb["neighbours"])
        line += f" Nearest neighbours of *{emb['anchor']['text']}*: {neighbours}."
    return line


def _protocol(data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    return next((p for p in data["protocols"] if p["label"] == key), None)


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    cold, news = _protocol(data, "P-cold"), _protocol(data, "news P-cold")
    if cold is None or news is None:
        return ()
    hit = cold["seed_means"]
    news_means = news["seed_means"]
    return (Headline(
        "text in the item tower (ml-100k, news)",
        "cold-item HR@10 (P-cold) and cold-article NDCG@10 (news), tower chosen on validation, 3 seeds",
        f"{hit[cold['winner']]['hit'][0]:.4f} ({cold['winner']}); "
        f"news {news_means[news['winner']]['ndcg'][0]:.4f} ({news['winner']})",
        f"ids + genres {hit[BASELINE]['hit'][0]:.4f} "
        f"(p = {pvalue(cold['paired_winner_seed_mean']['wilcoxon_pvalue'])}); "
        f"ids + topic {news_means[BASELINE]['ndcg'][0]:.4f} ({times(news['target']['ratio_winner_seed_mean'], 1)})",
        f"above ids + genres, p < 0.05: {verdict(cold['target']['met'])}; "
        f"news ≥ 2×: {verdict(news['target']['met'])}{_ceiling_note(data)}"),)


def _ceiling_note(data: Mapping[str, Any]) -> str:
    ceiling = data.get("news", {}).get("ceiling")
    news = _protocol(data, "news P-cold")
    if ceiling is None or news is None:
        return ""
    best = ceiling["topic_and_story"]["ndcg"] / news["seed_means"][BASELINE]["ndcg"][0]
    return f" (the data's ceiling: {times(best, 2)})"


def render(data: Mapping[str, Any]) -> Section:
    settings = data["settings"]
    parts = []
    intro = (f"Every item tower trains with seed {settings['seeds'][0]} (at most {settings['epochs']} epochs, early "
             f"stopping on validation, no time cap, dim {settings['dim']}); the text tower with the best validation "
             f"NDCG@10 is the protocol's winner and trains again, beside the baseline, with seeds "
             f"{', '.join(map(str, settings['seeds'][1:])) or '(none)'}. Paired tests are per user on test. "
             "P-cold ranks held-out items (no training events) among themselves, and its "
             "validation holds out cold items too. The ensemble blends the standardised scores of the baseline "
             "and a text-only tower trained apart, with the baseline's weight chosen on validation. "
             f"{data['total_seconds'] / 60:.0f} min in all.")
    parts.append(intro)
    if "embedding" in data:
        parts.append(_embedding(data["embedding"], "ml-100k text embedding"))
    for proto in data["protocols"]:
        ceiling = data.get("news", {}).get("ceiling") if proto["label"] == "news P-cold" else None
        parts += [f"**{proto['label']}** (user tower {proto['user_encoder']['name']}; paired metric "
                  f"{proto['metric']})", _variants_table(proto, ceiling), _seeds_line(proto)]
        if ceiling is not None:
            parts.append(_ceiling_line(proto, ceiling))
    if "news" in data:
        news = data["news"]
        sizes = news["sizes"]
        parts.append(_embedding(news["embedding"], f"Synthetic news ({sizes['users']:,} readers, {sizes['items']:,} "
                                                   f"articles, {sizes['events']:,} clicks) text embedding"))
    return Section(
        title="Text vectors in the item tower",
        measures="How the pretrained text vector (all-MiniLM-L6-v2) meets the id embedding — concatenated, added, "
                 "gated, initialising the ids, or a separately trained text model blended at the score — on "
                 "ml-100k's cold, random and sequential protocols and on synthetic news, where an article's story "
                 "is named only in its text; each against ids + attributes, with paired per-user tests.",
        command="python benchmarks/cold_start.py",
        body="\n\n".join(parts),
        headline=_headline(data),
    )
