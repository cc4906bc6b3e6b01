"""Score-level ensembles: models trained apart, their scores blended per user.

An id model ranks the items it saw in training well and every unseen item alike; a text-only
model ranks every item by its text, seen or not, and knows nothing of co-occurrence. Trained
apart, neither pulls the other's representation towards its own signal; blended at the
score, each keeps its strength. Scores of different models live on different scales, so each
user's row is standardised (zero mean, unit variance over the catalogue) before the weighted
sum, and the weight is chosen on the validation split, never on test.
``recengine ensemble FIRST SECOND`` (:func:`evaluate_ensemble`) does it for two bundles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recengine.errors import ConfigError, DataError
from recengine.evaluate import ScoreFn, evaluate_scorer
from recengine.training_data import EvalSet

if TYPE_CHECKING:
    from recengine.bundle import Bundle

DEFAULT_GRID = tuple(round(0.1 * step, 1) for step in range(11))  # weight of the first model


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each row over the catalogue (column 0, padding, left out of the statistics) to zero mean and
    unit variance; a constant row becomes zeros (that model then has no say for that user)."""
    body = scores[:, 1:]
    mean = body.mean(axis=1, keepdims=True)
    spread = body.std(axis=1, keepdims=True)
    return ((scores - mean) / np.where(spread > 0, spread, 1.0)).astype(np.float32)


def blend_scorers(scorers: Sequence[ScoreFn], weights: Sequence[float]) -> ScoreFn:
    """A scorer whose scores are ``sum(w_i * standardised(score_i))``."""
    if len(scorers) != len(weights) or not scorers:
        raise ConfigError(f"an ensemble needs one weight per model: {len(scorers)} models, {len(weights)} weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"ensemble weights must be non-negative and not all zero, got {list(weights)}")

    def score(users: np.ndarray, histories: list[np.ndarray], **times: object) -> np.ndarray:
        total = None
        for scorer, weight in zip(scorers, weights):
            if weight == 0:
                continue
            part = weight * standardised(scorer(users, histories, **times))
            total = part if total is None else total + part
        assert total is not None  # some weight is positive
        return total

    return score


@dataclass(frozen=True)
class BlendChoice:
    """The weight of the first of two models chosen on validation, with every weight's score."""

    weight: float
    metric: str
    validation: dict[float, float]  # weight → validation metric


def choose_blend(first: ScoreFn, second: ScoreFn, valid: EvalSet, metric: str = "ndcg@10",
                 grid: Sequence[float] = DEFAULT_GRID, masked: bool = True) -> BlendChoice:
    """The weight ``w`` in ``grid`` (``w * first + (1 - w) * second``) with the best validation
    ``metric``; ties go to the first best weight in grid order."""
    if not grid or any(not 0 <= w <= 1 for w in grid):
        raise ConfigError(f"blend weights must lie in [0, 1], got {list(grid)}")
    _, k = metric.split("@")
    scores = {float(w): evaluate_scorer(blend_scorers([first, second], [w, 1 - w]), valid, (int(k),),
                                        masked)[metric] for w in grid}
    best = max(scores, key=lambda w: scores[w])
    return BlendChoice(best, metric, scores)


@dataclass(frozen=True)
class EnsembleReport:
    """Two bundles and their blend on the first one's split: the weight chosen on validation, test
    metrics of each, and the blend paired user by user with each member."""

    protocol: str
    choice: BlendChoice
    test: dict[str, dict[str, float]]  # "first" / "second" / "ensemble" → metrics @ks
    paired: dict[str, dict[str, float]]  # "vs_first" / "vs_second" → recengine.metrics.paired_test

    def to_dict(self) -> dict[str, object]:
        return {"protocol": self.protocol, "weight_of_first": self.choice.weight, "metric": self.choice.metric,
                "validation_by_weight": self.choice.validation, "test": self.test, "paired": self.paired}


def evaluate_ensemble(first: Bundle, second: Bundle, store_path: str | Path, metric: str = "ndcg@10",
                      grid: Sequence[float] = DEFAULT_GRID, ks: tuple[int, ...] = (10, 20)) -> EnsembleReport:
    """Blend two bundles trained apart on the same store (an id model and a text-only one, say):
    the first's protocol and split, the weight chosen on its validation split, test beside both."""
    from recengine.compare import ranking_split
    from recengine.data import build_interactions
    from recengine.dataset import merged_event_weights, needs_event_times
    from recengine.evaluate import model_scorer
    from recengine.metrics import paired_test
    from recengine.pipeline import domain_event_weights

    for kind in ("users", "items"):
        if getattr(first, kind).ids != getattr(second, kind).ids:
            raise DataError(f"{first.path.name} and {second.path.name} index their {kind} differently (trained on "
                            f"different data): blend bundles trained on the same store")
    config = first.config
    protocol, split = ranking_split(first, store_path, "an ensemble blends rankings", also=(second,))
    interactions = build_interactions(
        split, first.users, first.items, protocol, merged_event_weights(config, domain_event_weights(config)),
        config.train.weight_by_value, max(config.model.max_history, second.config.model.max_history),
        with_times=needs_event_times(config) or needs_event_times(second.config))
    scorers = model_scorer(first.model), model_scorer(second.model)
    choice = choose_blend(*scorers, interactions.valid, metric, grid)
    blend = blend_scorers(scorers, [choice.weight, 1 - choice.weight])
    ks = tuple(sorted({*ks, int(metric.split("@")[1])}))  # the paired metric's cut-off is among those ranked
    test, per_user = {}, {}
    for name, scorer in (("first", scorers[0]), ("second", scorers[1]), ("ensemble", blend)):
        test[name], per_user[name] = evaluate_scorer(scorer, interactions.test, ks, True, per_user=metric)
    paired = {f"vs_{name}": paired_test(per_user["ensemble"], per_user[name]) for name in ("first", "second")}
    return EnsembleReport(protocol, choice, test, paired)
