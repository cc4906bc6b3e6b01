"""Text vectors that earn their place: fusion options on ml-100k (P-cold, P-gen, P-seq) and synthetic news.

Run ``python benchmarks/cold_start.py`` (about an hour on 2 cores, one process; ``--parts`` splits it
so two processes can share the machine, ``--combine`` joins their files) or ``--quick`` (2 epochs per
run, one seed: checks that it works).

1. Text embedding: every item's text (ml-100k ``title`` + genres ``class``) through all-MiniLM-L6-v2
   into the vector set ``text`` (raw, 384-d) and, whitened to 128 dimensions, ``text_white``
   (``recengine vectors build --whiten 128``); throughput (items/s inside the encoder) and each
   set's anisotropy (mean cosine between items) are printed.
2. Per protocol, every item tower below is trained with seed 0 and the text variant with the best
   **validation** NDCG@10 is the protocol's winner; the winner and the baseline (ids + attributes)
   then train with the other seeds. Paired per-user tests on test: each variant against the baseline
   on seed 0, and the winner against the baseline on each user's mean over all seeds. Metric: HR@10
   on cold items for P-cold (items with no training events, ranked among themselves), NDCG@10 on the
   warm protocols. P-cold's validation split holds out another 10% of the items, so its winner is
   chosen on cold items as the test judges them.
3. Synthetic news (``--news``, on by default): readers follow stories within topics, and only an
   article's text names its story; P-cold holds out 10% of the articles. Target: cold-article NDCG@10
   of the best text tower >= 2x the attributes-only tower (ids + topic, whose cold items are their topic).

Item towers (``model.item_encoder``): ``ids + attributes`` (``dense``); ``text concat`` on raw and on
whitened vectors (the text projection is one more input of the tower); ``text add`` / ``text gate``
(whitened; the tower without text plus, or gated with, the projected text); ``text add + init ids``
(ids start at the text's principal components); and ``ensemble``: the baseline and a text-only model
trained apart, their standardised scores blended with a weight chosen on validation
(``recengine.ensemble``). Results go to ``benchmarks/results/cold_start.json``.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from recengine.config import PipelineConfig
from recengine.ensemble import blend_scorers, choose_blend
from recengine.evaluate import ScoreFn, evaluate_scorer, model_scorer
from recengine.feature_store import FeatureStore
from recengine.metrics import paired_test
from recengine.pipeline import TrainedPipeline, prepare_training, train_pipeline
from recengine.plugin_manager import get_plugin_manager
from recengine.synthetic import SyntheticData
from recengine.vector_transform import TransformSpec, mean_cosine
from recengine.vectors import build_text_vectors, item_texts

_HERE = Path(__file__).resolve().parent
ML100K = _HERE.parent.parent / "shared" / "data" / "ml-100k"
RESULTS = _HERE / "results" / "cold_start.json"
ML_FIELDS = ["title", "class"]
RAW, WHITE, WHITE_DIM = "text", "text_white", 128
K = 10
NEWS_TARGET_RATIO = 2.0  # news cold-article NDCG@10, best text tower over the attributes-only tower
NEWS_SIZE = {"users": 3000, "items": 4000, "events": 80_000}
BASELINE = "ids + attributes"

console = Console(width=None if sys.stdout.isatty() else 160)
if not sys.stdout.isatty():
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up in logs as they happen


@dataclass(frozen=True)
class Variant:
    """An item tower: its encoder spec and the vector set it reads (None: no text)."""

    item: dict[str, Any]
    vector: str | None = None
    ensemble: bool = False  # the baseline and TEXT_ONLY trained apart, scores blended


def _text(vector: str, **params: Any) -> dict[str, Any]:
    return {"name": "text", "params": {"vector": vector, **params}}


TEXT_ONLY = Variant(_text(WHITE, use_ids=False, use_features=False), WHITE)
VARIANTS: dict[str, Variant] = {
    BASELINE: Variant({"name": "dense", "params": {}}),
    "text concat (raw)": Variant(_text(RAW), RAW),
    "text concat (whitened)": Variant(_text(WHITE), WHITE),
    "text add (whitened)": Variant(_text(WHITE, fusion="add"), WHITE),
    "text gate (whitened)": Variant(_text(WHITE, fusion="gate"), WHITE),
    "text add + init ids (whitened)": Variant(_text(WHITE, fusion="add", init_ids=True), WHITE),
    "ensemble (ids + attributes, text only)": Variant(TEXT_ONLY.item, WHITE, ensemble=True),
}

# Warm runs use the training settings tuned in benchmarks/quality.py (softmax-mf for P-gen,
# sasrec for P-seq) at lr 5e-3: with feature and text inputs the item tower overfits sooner at 1e-2.
USER_HISTORY = {"name": "dense", "params": {"use_history": True}}
USER_IDS = {"name": "dense", "params": {"use_features": False}}
USER_SASREC = {"name": "transformer", "params": {"layers": 2, "heads": 2, "dropout": 0.2}}
TUNED_GEN = {"train.objective": "softmax", "train.lr": 5e-3, "train.batch_size": 1024, "train.weight_decay": 1e-4,
             "train.patience": 6}
TUNED_SEQ = {"model.max_history": 50, "train.mode": "sequence", "train.lr": 5e-3, "train.batch_size": 64,
             "train.patience": 5}


@dataclass(frozen=True)
class Protocol:
    key: str  # also the train.protocol
    label: str
    user: dict[str, Any]
    tuned: dict[str, Any] = field(default_factory=dict)
    metric: str = "ndcg@10"  # the test metric of the paired tests


PROTOCOLS = {
    "cold": Protocol("cold", "P-cold", USER_HISTORY, metric="hit@10"),
    "gen": Protocol("gen", "P-gen", USER_IDS, TUNED_GEN),
    "seq": Protocol("seq", "P-seq", USER_SASREC, TUNED_SEQ),
    "news": Protocol("cold", "news P-cold", USER_HISTORY),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 epochs per run, seed 0 only (checks it works)")
    parser.add_argument("--epochs", type=int, default=None, help="max epochs per run (default 60; 2 with --quick)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="train.max_minutes per run (default none: runs stop by epochs and patience, so a "
                             "seeded run does not depend on the machine's load)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds; the first chooses the winners")
    parser.add_argument("--parts", default="cold,gen,seq,news", help="comma-separated subset of cold,gen,seq,news")
    parser.add_argument("--data", type=Path, default=ML100K, help="ml-100k directory (RecBole atomic files)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results path (rewritten after every step)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--combine", type=Path, nargs="+", default=None,
                        help="join result files of separate --parts runs into --out and report (trains nothing)")
    return parser.parse_args(argv)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- 1. text embedding ---------------------------------------------------------------------------
def embed_items(store_path: Path, fields: list[str], anchor_title: str | None) -> dict[str, Any]:
    """Build the raw and whitened vector sets; time the encoder; anisotropy; an anchor's neighbours."""
    from recengine.plugins.encoders.text import TextEncoder

    started = time.perf_counter()
    TextEncoder.load_model()
    model_load_s = time.perf_counter() - started
    TextEncoder.embed_texts(["warm-up"] * 8)  # first call allocates; keep it out of the timing
    spent = {"seconds": 0.0, "items": 0}

    def timed_embed(texts: list[str]) -> np.ndarray:
        begin = time.perf_counter()
        vectors = TextEncoder.embed_texts(texts)
        spent["seconds"] += time.perf_counter() - begin
        spent["items"] += len(texts)
        return vectors

    load_before = load_average()
    with FeatureStore(store_path) as store:
        begin = time.perf_counter()
        embedded, _ = build_text_vectors(store, timed_embed, fields, name=RAW, rebuild=True)
        build_s = time.perf_counter() - begin
        items_per_second = spent["items"] / max(spent["seconds"], 1e-9)
        build_text_vectors(store, TextEncoder.embed_texts, fields, name=WHITE,
                           transform=TransformSpec.of("whiten", WHITE_DIM))
        ids, raw = store.read_vectors(RAW)
        _, white = store.read_vectors(WHITE)
        items = store.latest("items")
    out: dict[str, Any] = {
        "items": embedded, "fields": fields, "dimension": int(raw.shape[1]), "whitened_dimension": WHITE_DIM,
        "model_load_s": round(model_load_s, 2), "embed_s": round(spent["seconds"], 2),
        "build_s_with_store_writes": round(build_s, 2), "items_per_second": round(items_per_second, 1),
        "mean_cosine_raw": round(mean_cosine(raw), 4), "mean_cosine_whitened": round(mean_cosine(white), 4),
        "load_average_before": load_before, "load_average_after": load_average(),
        "torch_threads": torch.get_num_threads(),
    }
    if anchor_title is not None:
        texts = dict(zip(items["item_id"].to_list(), item_texts(items, fields)))
        titles = dict(zip(items["item_id"].to_list(), items["title"].to_list()))
        anchor = next(item for item in ids if titles[item] == anchor_title)
        row = list(ids).index(anchor)
        similarity = raw @ raw[row]
        order = [r for r in np.argsort(-similarity) if ids[r] != anchor][:5]
        out["anchor"] = {"item_id": anchor, "text": texts[anchor]}
        out["neighbours"] = [{"item_id": ids[r], "text": texts[ids[r]], "cosine": round(float(similarity[r]), 4)}
                             for r in order]
    return out


# -- 2. training -----------------------------------------------------------------------------------
@dataclass
class Context:
    store: Path
    models: Path
    epochs: int
    max_minutes: float | None
    domain: str | None = None


def config_for(ctx: Context, proto: Protocol, item: dict[str, Any], vector: str | None, seed: int,
               name: str) -> PipelineConfig:
    overrides: dict[str, Any] = {
        "model.user_encoder": proto.user, "model.item_encoder": item,
        "model.item_vectors": [vector] if vector else [],
        "train.protocol": proto.key, "train.epochs": ctx.epochs, "train.seed": seed, "train.device": "cpu",
        **proto.tuned,
    }
    if ctx.max_minutes is not None:
        overrides["train.max_minutes"] = ctx.max_minutes
    config = PipelineConfig(name=name)
    if ctx.domain:
        config = config.with_overrides({"domain": ctx.domain})
    return config.with_overrides(overrides)


def train(ctx: Context, proto: Protocol, label: str, item: dict[str, Any], vector: str | None,
          seed: int) -> tuple[TrainedPipeline, float]:
    console.print(f"  [bold]{proto.label}[/] seed {seed}: {label} (load {load_average()[0]})...")
    begin = time.perf_counter()
    trained = train_pipeline(ctx.store, config_for(ctx, proto, item, vector, seed, f"cold-start-{proto.key}"),
                             ctx.models, progress=False)
    return trained, time.perf_counter() - begin


def evaluated(scorer: ScoreFn, trained: TrainedPipeline, metric: str) -> tuple[dict[str, float], np.ndarray]:
    """Test HR/NDCG@10 and the per-user ``metric`` of a scorer on ``trained``'s test split."""
    values, per_user = evaluate_scorer(scorer, trained.data.interactions.test, (K,), True, per_user=metric)
    return {"hit": values[f"hit@{K}"], "ndcg": values[f"ndcg@{K}"]}, per_user


def summary(trained: TrainedPipeline, seconds: float, test: dict[str, float]) -> dict[str, Any]:
    m = trained.metrics
    epoch_seconds = m["epoch_seconds"]
    return {"test": test, "valid_ndcg@10": m["valid"].get("ndcg@10"), "best_epoch": m["best_epoch"],
            "epochs_run": m["epochs_run"], "run_seconds": round(seconds, 1),
            "epoch_seconds": round(float(np.mean(epoch_seconds) if isinstance(epoch_seconds, list)
                                         else epoch_seconds), 2)}


class ProtocolRun:
    """Every variant of one protocol, seed by seed; the baseline of each seed kept for ensembles."""

    def __init__(self, ctx: Context, proto: Protocol) -> None:
        self.ctx, self.proto = ctx, proto
        self.runs: dict[str, dict[int, dict[str, Any]]] = {}
        self.per_user: dict[str, dict[int, np.ndarray]] = {}
        self.baselines: dict[int, TrainedPipeline] = {}

    def run(self, label: str, seed: int) -> None:
        variant = VARIANTS[label]
        if variant.ensemble:
            record, values = self._ensemble(seed)
        else:
            trained, seconds = train(self.ctx, self.proto, label, variant.item, variant.vector, seed)
            test, values = evaluated(model_scorer(trained.result.model), trained, self.proto.metric)
            record = summary(trained, seconds, test)
            if label == BASELINE:
                self.baselines[seed] = trained
                record["popularity"] = _hit_ndcg(trained.metrics["popularity"])
                if "random" in trained.metrics:
                    record["random"] = _hit_ndcg(trained.metrics["random"])
                    record["cold_items"] = trained.metrics["cold_items"]
                record["test_users"] = trained.metrics["test_users"]
        self.runs.setdefault(label, {})[seed] = record
        self.per_user.setdefault(label, {})[seed] = values
        console.print(f"    test HR@10 {record['test']['hit']:.4f}, NDCG@10 {record['test']['ndcg']:.4f}; "
                      f"valid NDCG@10 {record['valid_ndcg@10']:.4f} ({record['run_seconds']:.0f}s)")

    def _ensemble(self, seed: int) -> tuple[dict[str, Any], np.ndarray]:
        if seed not in self.baselines:
            self.run(BASELINE, seed)
        base = self.baselines[seed]
        text, seconds = train(self.ctx, self.proto, "text only (for the ensemble)", TEXT_ONLY.item, TEXT_ONLY.vector,
                              seed)
        for split in ("valid", "test"):  # the same users in the same order, or the blend pairs nothing
            assert np.array_equal(getattr(base.data.interactions, split).users,
                                  getattr(text.data.interactions, split).users)
        first, second = model_scorer(base.result.model), model_scorer(text.result.model)
        choice = choose_blend(first, second, base.data.interactions.valid)
        test, values = evaluated(blend_scorers([first, second], [choice.weight, 1 - choice.weight]), base,
                                 self.proto.metric)
        text_test, _ = evaluated(second, text, self.proto.metric)
        record = summary(text, seconds, test)
        record["valid_ndcg@10"] = choice.validation[choice.weight]
        record.update({"weight_of_baseline": choice.weight, "validation_by_weight": choice.validation,
                       "text_only": {"test": text_test, "valid_ndcg@10": text.metrics["valid"].get("ndcg@10")}})
        return record, values

    def winner(self, seed: int) -> str:
        """The text variant with the best validation NDCG@10 on ``seed``."""
        texts = [label for label in self.runs if label != BASELINE and seed in self.runs[label]]
        return max(texts, key=lambda label: self.runs[label][seed]["valid_ndcg@10"])

    def result(self, seeds: list[int]) -> dict[str, Any]:
        first = seeds[0]
        if len(self.runs) < 2:  # only the baseline so far
            return {"label": self.proto.label, "runs": {label: {str(s): r for s, r in by_seed.items()}
                                                        for label, by_seed in self.runs.items()}}
        winner = self.winner(first)
        base_values = self.per_user[BASELINE]
        common = [s for s in seeds if s in base_values and s in self.per_user[winner]]
        out: dict[str, Any] = {
            "protocol": self.proto.key, "label": self.proto.label, "metric": self.proto.metric,
            "user_encoder": self.proto.user, "training": self.proto.tuned, "runs": {
                label: {str(seed): record for seed, record in by_seed.items()} for label, by_seed in self.runs.items()},
            "winner": winner, "winner_seeds": common,
            "paired_first_seed": {label: paired_test(values[first], base_values[first])
                                  for label, values in self.per_user.items() if label != BASELINE},
            "paired_winner_seed_mean": paired_test(np.mean([self.per_user[winner][s] for s in common], axis=0),
                                                   np.mean([base_values[s] for s in common], axis=0)),
        }
        out["seed_means"] = {label: _seed_mean(self.runs[label], common) for label in (BASELINE, winner)}
        return out


def _hit_ndcg(metrics: dict[str, float]) -> dict[str, float]:
    return {"hit": metrics[f"hit@{K}"], "ndcg": metrics[f"ndcg@{K}"]}


def _seed_mean(by_seed: dict[int, dict[str, Any]], seeds: list[int]) -> dict[str, list[float]]:
    out = {}
    for key in ("hit", "ndcg"):
        values = [by_seed[s]["test"][key] for s in seeds]
        out[key] = [float(np.mean(values)), float(np.std(values))]
    return out


def run_protocol(ctx: Context, proto: Protocol, seeds: list[int],
                 save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    console.print(f"[bold]{proto.label}[/]: {len(VARIANTS)} item towers on seed {seeds[0]}, then the winner and "
                  f"the baseline on seeds {seeds[1:]}")
    runs = ProtocolRun(ctx, proto)
    for label in VARIANTS:
        if label not in runs.runs or seeds[0] not in runs.runs[label]:
            runs.run(label, seeds[0])
        save(runs.result(seeds[:1]))
    winner = runs.winner(seeds[0])
    console.print(f"  winner on validation: {winner}")
    for seed in seeds[1:]:
        for label in (BASELINE, winner):
            if seed not in runs.runs.get(label, {}):
                runs.run(label, seed)
        save(runs.result(seeds))
    result = runs.result(seeds)
    result["target"] = target(proto, result)
    return result


def target(proto: Protocol, result: dict[str, Any]) -> dict[str, Any]:
    """The issue's target for this protocol, judged on the numbers just measured."""
    first = str(result["winner_seeds"][0])
    base = result["runs"][BASELINE][first]["test"]
    if proto.label == "news P-cold":
        best = max((label for label in result["runs"] if label != BASELINE),
                   key=lambda label: result["runs"][label][first]["test"]["ndcg"])
        ratio = result["runs"][best][first]["test"]["ndcg"] / max(base["ndcg"], 1e-12)
        winner_ratio = result["seed_means"][result["winner"]]["ndcg"][0] / max(
            result["seed_means"][BASELINE]["ndcg"][0], 1e-12)
        return {"rule": f"cold-article NDCG@10 >= {NEWS_TARGET_RATIO}x the attributes-only tower",
                "best_on_test": best, "ratio_best": ratio, "ratio_winner_seed_mean": winner_ratio,
                "met": winner_ratio >= NEWS_TARGET_RATIO}
    paired = result["paired_winner_seed_mean"]
    better = paired["mean_diff"] > 0 and paired["wilcoxon_pvalue"] < 0.05
    rule = ("cold-item HR@10 above ids + genres, p < 0.05" if proto.key == "cold"
            else "warm NDCG@10 with text above without, p < 0.05")
    return {"rule": rule, "difference": paired["mean_diff"], "pvalue": paired["wilcoxon_pvalue"], "met": better}


# -- 3. synthetic news -------------------------------------------------------------------------------
def prepare_news(tmp: Path, seed: int = 7) -> tuple[Path, dict[str, Any], SyntheticData]:
    domain = get_plugin_manager().domain("news")
    data = domain.generate(NEWS_SIZE["users"], NEWS_SIZE["items"], NEWS_SIZE["events"], seed)
    paths = data.write(tmp / "news-data")
    store_path = tmp / "news.duckdb"
    with FeatureStore(store_path, schema=domain.store_schema) as store:
        store.ingest_paths([paths["users"], paths["items"], paths["events"]])
    return store_path, {"sizes": NEWS_SIZE, "generator_seed": seed, "fields": list(domain.text_fields)}, data


def news_ceilings(ctx: Context, data: SyntheticData) -> dict[str, Any]:
    """What a perfect tower could reach on news P-cold, from the generator's truth (which no model sees).

    Each test reader's cold articles are ranked by the chance of a click on them, knowing the
    article's topic alone (the attributes-only tower's ceiling: the reader's true taste over topics)
    or its topic and story (what the text can add: the story each reader follows per topic). How
    often a click follows the reader's story is measured per topic on the generated clicks: a visit
    that finds no fresh article of its story reads any article of the topic, so small topics follow
    less than the generator's ``story_following``. Neither ranking knows an article's hidden appeal
    (its clicks are held out, and its text does not carry it) or the visit's time (the cold split
    ranks without it), and neither does a tower.
    """
    truth = data.truth
    prepared, _ = prepare_training(ctx.store, config_for(ctx, PROTOCOLS["news"], VARIANTS[BASELINE].item, None, 0,
                                                         "news-ceiling"))
    test = prepared.interactions.test
    row_of_user = np.zeros(len(prepared.users) + 1, dtype=np.int64)  # index 0 (padding) reads row 0, never ranked
    row_of_user[prepared.users.encode(data.users["user_id"])] = np.arange(data.users.height)
    row_of_item = np.zeros(len(prepared.items) + 1, dtype=np.int64)
    row_of_item[prepared.items.encode(data.items["item_id"])] = np.arange(data.items.height)
    topics, stories = len(truth["topics"]), int(truth["reader_story"].max()) + 1
    topic, story = truth["item_topic"][row_of_item], truth["item_story"][row_of_item]
    groups = topic * stories + story
    in_topic = np.bincount(topic[test.candidates], minlength=topics)[topic].clip(min=1)
    in_story = np.bincount(groups[test.candidates], minlength=topics * stories)[groups].clip(min=1)
    following = _story_following(data)  # [topics]

    def chance(with_story: bool) -> ScoreFn:
        def score(users: np.ndarray, histories: list[np.ndarray], times: Any = None) -> np.ndarray:
            rows = row_of_user[users]
            taste = truth["user_topic_taste"][rows][:, topic]  # [B, N+1]: the reader's taste for each article's topic
            if not with_story:
                return (taste / in_topic).astype(np.float32)
            follows = truth["reader_story"][rows][:, topic] == story
            f = following[topic]
            return (taste * (f * follows / in_story + (1 - f) / in_topic)).astype(np.float32)
        return score

    out: dict[str, Any] = {"story_following_by_topic": dict(zip(truth["topics"], following.round(3).tolist()))}
    for key, with_story in (("topic", False), ("topic_and_story", True)):
        metrics = evaluate_scorer(chance(with_story), test, (K,), True)
        out[key] = {"hit": metrics[f"hit@{K}"], "ndcg": metrics[f"ndcg@{K}"]}
    out["ratio"] = out["topic_and_story"]["ndcg"] / max(out["topic"]["ndcg"], 1e-12)
    return out


def _story_following(data: SyntheticData) -> np.ndarray:
    """Per topic, the share of clicks that follow the reader's story beyond chance: ``(s - 1/S) / (1 - 1/S)``
    for an on-story share ``s`` of the topic's clicks and ``S`` stories a topic."""
    truth = data.truth
    rows = {item: r for r, item in enumerate(data.items["item_id"].to_list())}
    readers = {user: r for r, user in enumerate(data.users["user_id"].to_list())}
    items = np.fromiter((rows[i] for i in data.events["item_id"].to_list()), dtype=np.int64)
    users = np.fromiter((readers[u] for u in data.events["user_id"].to_list()), dtype=np.int64)
    topic = truth["item_topic"][items]
    on_story = truth["reader_story"][users, topic] == truth["item_story"][items]
    topics, chance = len(truth["topics"]), 1.0 / (int(truth["reader_story"].max()) + 1)
    share = np.bincount(topic, weights=on_story, minlength=topics) / np.bincount(topic, minlength=topics).clip(min=1)
    return np.clip((share - chance) / (1 - chance), 0.0, 1.0)


def with_ceiling(part: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    """The news target beside what the data allows: the text ceiling over the measured attributes-only tower."""
    base = part["seed_means"][BASELINE]["ndcg"][0]
    part["target"]["ceiling_over_baseline"] = ceiling["topic_and_story"]["ndcg"] / max(base, 1e-12)
    part["target"]["reachable"] = part["target"]["ceiling_over_baseline"] >= NEWS_TARGET_RATIO
    return part


# -- report ----------------------------------------------------------------------------------------------
def report(results: dict[str, Any]) -> None:
    for part in results.get("protocols", []):
        table = Table(title=f"{part['label']} ({part['metric']} paired; winner on validation: {part['winner']})")
        for name in ("item tower", "HR@10", "NDCG@10", "valid NDCG@10", "vs baseline (seed 0)", "epochs", "s"):
            table.add_column(name)
        first = str(part["winner_seeds"][0])
        for label, by_seed in part["runs"].items():
            r = by_seed[first]
            paired = part["paired_first_seed"].get(label)
            versus = "" if paired is None else f"{paired['mean_diff']:+.4f} (p {paired['wilcoxon_pvalue']:.3f})"
            table.add_row(label, f"{r['test']['hit']:.4f}", f"{r['test']['ndcg']:.4f}", f"{r['valid_ndcg@10']:.4f}",
                          versus, f"{r['epochs_run']} (best {r['best_epoch']})", f"{r['run_seconds']:.0f}")
        console.print(table)
        t, p = part["target"], part["paired_winner_seed_mean"]
        console.print(f"  seeds {part['winner_seeds']}: winner {part['seed_means'][part['winner']]} vs baseline "
                      f"{part['seed_means'][BASELINE]}; per-user seed-mean paired Δ {p['mean_diff']:+.4f}, "
                      f"Wilcoxon p {p['wilcoxon_pvalue']:.4f}; target {t['rule']}: "
                      f"{'met' if t['met'] else 'MISSED'}")


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"complete": False, **results}, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def combine(paths: list[Path], out: Path) -> dict[str, Any]:
    """One result from the files of separate ``--parts`` runs: a protocol run in several files is
    taken from the last of them (a re-run replaces it); the embedding from the first that has one."""
    parts = [json.loads(p.read_text()) for p in paths]
    merged = dict(parts[0])
    by_label = {proto["label"]: proto for part in parts for proto in part.get("protocols", [])}
    order = [label for label in ("P-cold", "P-gen", "P-seq", "news P-cold") if label in by_label]
    merged["protocols"] = [by_label[label] for label in order + sorted(set(by_label) - set(order))]
    for part in parts:
        if "embedding" in part and "embedding" not in merged:
            merged["embedding"] = part["embedding"]
        if "news" in part:  # the news part's setting and embedding go with its protocol: the last run's
            merged["news"] = part["news"]
    merged["combined_from"] = [  # a file that was itself combined names its own sources
        source for p, part in zip(paths, parts)
        for source in part.get("combined_from") or [{"path": str(p), "created": part.get("created"),
                                                     "parts": part["settings"]["parts"],
                                                     "total_seconds": part.get("total_seconds")}]]
    merged["settings"] = {**parts[0]["settings"],
                          "parts": [p for p in PROTOCOLS if any(p in part["settings"]["parts"] for part in parts)]}
    merged["total_seconds"] = max(part.get("total_seconds", 0.0) for part in parts)  # they ran side by side
    merged["complete"] = all(part.get("complete") for part in parts)
    out.write_text(json.dumps(merged, indent=2) + "\n")
    return merged


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.combine:
        report(combine(args.combine, args.out))
        console.print(f"Wrote {args.out}")
        return
    torch.set_num_threads(args.threads)
    epochs = args.epochs or (2 if args.quick else 60)
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.quick else None]
    wanted = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(wanted) - set(PROTOCOLS))
    if unknown:
        raise SystemExit(f"unknown --parts {unknown}; choose from {sorted(PROTOCOLS)}")
    ml_parts = [p for p in wanted if p != "news"]
    if ml_parts and not (args.data / "ml-100k.inter").exists():
        raise SystemExit(f"ml-100k not found at {args.data} (needed for {ml_parts})")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "cold_start", "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_start": load_average()},
        "settings": {"epochs": epochs, "max_minutes": args.max_minutes, "quick": args.quick, "parts": wanted,
                     "seeds": seeds, "split_seed": 2020, "dim": 64, "k": K, "whiten_dim": WHITE_DIM},
        "protocols": [],
    }
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        if ml_parts:
            ctx = Context(Path(tmp) / "ml.duckdb", Path(tmp) / "models", epochs, args.max_minutes)
            with FeatureStore(ctx.store) as store:
                store.ingest_paths([args.data])
            console.print("Ingested ml-100k; embedding item text (raw and whitened)...")
            results["embedding"] = embed_items(ctx.store, ML_FIELDS, "Toy Story")
            e = results["embedding"]
            console.print(f"  {e['items']} items at {e['items_per_second']:.0f} items/s; mean cosine raw "
                          f"{e['mean_cosine_raw']:.3f}, whitened {e['mean_cosine_whitened']:.3f}")
            for part in ml_parts:
                _finish_part(results, run_protocol(ctx, PROTOCOLS[part], seeds,
                                                   lambda partial: _partial(results, partial, args.out)), args.out)
        if "news" in wanted:
            store_path, news, generated = prepare_news(Path(tmp))
            ctx = Context(store_path, Path(tmp) / "news-models", epochs, args.max_minutes, domain="news")
            console.print(f"Synthetic news {news['sizes']}; embedding article text...")
            news["embedding"] = embed_items(store_path, news["fields"], None)
            news["ceiling"] = news_ceilings(ctx, generated)
            c = news["ceiling"]
            console.print(f"  ceiling from the generator's truth: NDCG@10 {c['topic']['ndcg']:.4f} knowing the topic, "
                          f"{c['topic_and_story']['ndcg']:.4f} knowing topic and story ({c['ratio']:.2f}x)")
            results["news"] = news
            part = run_protocol(ctx, PROTOCOLS["news"], seeds, lambda partial: _partial(results, partial, args.out))
            _finish_part(results, with_ceiling(part, news["ceiling"]), args.out)
    results["machine"]["load_average_end"] = load_average()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["complete"] = True
    save(results, args.out)
    report(results)
    console.print(f"\nTotal {results['total_seconds']:.0f}s; wrote {args.out}")


def _partial(results: dict[str, Any], partial: dict[str, Any], out: Path) -> None:
    """Save with this protocol's runs so far (an interrupted run keeps what it measured)."""
    save({**results, "in_progress": partial}, out)


def _finish_part(results: dict[str, Any], part: dict[str, Any], out: Path) -> None:
    results["protocols"].append(part)
    save(results, out)


if __name__ == "__main__":
    main()
