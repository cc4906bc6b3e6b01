"""Score-level ensembles: models trained apart, their scores blended per user.

An id model ranks the items it saw in training well and every unseen item alike; a text-only
model ranks every item by its text, seen or not, and knows nothing of co-occurrence. Trained
apart, neither pulls the other's representation towards its own signal; blended at the
score, each keeps its strength. Scores of different models live on different scales, so each
user's row is standardised (zero mean, unit variance over the catalogue) before the weighted
sum, and the weight is chosen on the validation split, never on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recengine.errors import ConfigError
from recengine.evaluate import ScoreFn, evaluate_scorer
from recengine.training_data import EvalSet

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
