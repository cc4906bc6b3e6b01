"""Full-ranking evaluation of a model (and the popularity baseline) on an eval split.

Every item is ranked for every user (never sampled negatives), with RecBole's metric
definitions from :mod:`recengine.metrics`. ``run_metrics`` is what every finished training
run reports (local, Ray and standalone alike).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch

from recengine.beyond_accuracy import beyond_accuracy
from recengine.errors import ConfigError, DataError
from recengine.event_times import TIMES_MISSING
from recengine.metrics import (
    gauc,
    mask_scores,
    per_user_metric,
    ranking_metrics,
    rating_metrics,
    topk_from_scores,
    user_auc,
)
from recengine.training_data import EvalSet, Interactions, PairSet, PreparedData, pad_histories

if TYPE_CHECKING:  # annotations only: recengine.train imports this module
    from recengine.config import PipelineConfig
    from recengine.model import RecModel
    from recengine.train import TrainResult

ScoreFn = Callable[..., np.ndarray]
"""``score(users, histories)`` → [B, N+1] scores; when the eval set carries event times (a
time-reading user encoder's, :mod:`recengine.event_times`) ``rank_eval_set`` also passes
``times=(history_times, query_times)``, which the engine's scorers accept."""
EventTimes = tuple[list[np.ndarray], np.ndarray]  # per-user history times, query time per user


@dataclass
class Ranking:
    """A scorer's top-K lists over an eval split (and, when asked, each user's full-ranking AUC)."""

    top: np.ndarray  # [U, K] item indices, best first, -1 where fewer than K items are rankable
    auc: np.ndarray | None = None  # [U] per-user AUC (NaN where undefined)
    pos_len: np.ndarray | None = None  # [U] distinct positives per user


#: Scores one evaluation block may hold (float32: 32 MiB; masking and top-K make a few copies):
#: the users per block shrink as the catalogue grows, so 1M items rank 8 users at a time.
EVAL_BLOCK_SCORES = 1 << 23


def block_users(columns: int, batch_size: int, max_scores: int = EVAL_BLOCK_SCORES) -> int:
    """Users per evaluation block: ``batch_size``, fewer when their scores would pass ``max_scores``."""
    return max(1, min(batch_size, max_scores // max(columns, 1)))


def rank_eval_set(score_fn: ScoreFn, eval_set: EvalSet, k: int, masked: bool = True, batch_size: int = 512, *,
                  with_auc: bool = False, advance: Callable[[int], None] | None = None,
                  max_scores: int = EVAL_BLOCK_SCORES) -> Ranking:
    """Score every item for every user of ``eval_set`` in blocks of users and keep the top ``k``
    (padded with -1 past the rankable catalogue); ``with_auc`` also computes each user's AUC on
    the same masked scores (GAUC); ``advance(n)`` is told of each finished block of ``n`` users.

    Memory is bounded by ``max_scores``: the first block is one user, whose row gives the
    catalogue's width, and every later block holds at most ``batch_size`` users and
    ``max_scores`` scores. Rows are independent, so the lists are the same for any block size.
    """
    blocks, aucs, lens = [], [], []
    begin, rows = 0, 1
    while begin < len(eval_set):
        end = begin + rows
        if eval_set.history_times is not None and eval_set.query_times is not None:
            scores = score_fn(eval_set.users[begin:end], eval_set.histories[begin:end],
                              times=(eval_set.history_times[begin:end], eval_set.query_times[begin:end]))
        else:
            scores = score_fn(eval_set.users[begin:end], eval_set.histories[begin:end])
        if eval_set.candidates is not None:
            allowed = np.zeros(scores.shape[1], dtype=bool)
            allowed[eval_set.candidates] = True
            scores = np.where(allowed[None, :], scores, -np.inf)
        masked_scores = mask_scores(scores, eval_set.exclude[begin:end] if masked else None)
        blocks.append(topk_from_scores(masked_scores, k))
        if with_auc:
            auc, pos_len = user_auc(masked_scores, eval_set.positives[begin:end])
            aucs.append(auc)
            lens.append(pos_len)
        if advance is not None:
            advance(masked_scores.shape[0])
        begin, rows = end, block_users(scores.shape[1], batch_size, max_scores)
    top = np.concatenate(blocks) if blocks else np.zeros((0, k), dtype=np.int64)
    if not with_auc:
        return Ranking(top)
    return Ranking(top, np.concatenate(aucs) if aucs else np.zeros(0), np.concatenate(lens) if lens else
                   np.zeros(0, dtype=np.int64))


def _topk(score_fn: ScoreFn, eval_set: EvalSet, k: int, masked: bool, batch_size: int) -> np.ndarray:
    return rank_eval_set(score_fn, eval_set, k, masked, batch_size).top


def model_scorer(model: RecModel, max_history: int | None = None) -> ScoreFn:
    """Scores of all items [B, N+1] for users and their histories, without gradients. The item
    matrix is computed once, at the first call: a scorer serves one evaluation of fixed weights."""
    length = max_history or model.config.max_history
    cached: list[torch.Tensor] = []

    @torch.no_grad()
    def score(users: np.ndarray, histories: list[np.ndarray], times: EventTimes | None = None) -> np.ndarray:
        model.eval()
        device = model.device
        if not cached:
            cached.append(model.item_matrix())
        items = cached[0]
        encoded = model.encode_users(torch.as_tensor(users, device=device),
                                     torch.as_tensor(pad_histories(histories, length), device=device),
                                     time_tensors(model, times, length), search_tensors(model, users, times))
        return model.interactor.score_all(encoded, items).float().cpu().numpy()

    return score


def time_tensors(model: RecModel, times: EventTimes | None,
                 length: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``encode_users``' times for a time-reading model (None for the others, whatever is given);
    a ``ConfigError`` when it reads times and the evaluation data has none."""
    if not model.reads_event_times:
        return None
    if times is None:
        raise ConfigError(f"model.user_encoder ({model.config.user_encoder.name!r}): {TIMES_MISSING}")
    history_times, query_times = times
    return (torch.as_tensor(pad_histories(history_times, length), device=model.device),
            torch.as_tensor(np.asarray(query_times, dtype=np.int64), device=model.device))


def search_tensors(model: RecModel, users: np.ndarray, times: EventTimes | None) -> torch.Tensor | None:
    """``encode_users``' pooled searches for a model that reads them, as of each user's
    prediction time; a ``ConfigError`` when the evaluation data has no times to pool at."""
    if not model.reads_searches:
        return None
    if times is None:
        raise ConfigError("model.searches pools each user's searches as of the prediction's time, and this "
                          "evaluation data has none (build it with with_times=needs_event_times(config))")
    return model.pool_searches(np.asarray(users), np.asarray(times[1], dtype=np.int64))


def random_scorer(num_items: int, seed: int = 0) -> ScoreFn:
    """Uniformly random scores: the chance baseline (cold items have no popularity)."""
    rng = np.random.default_rng(seed)

    def score(users: np.ndarray, histories: list[np.ndarray], times: EventTimes | None = None) -> np.ndarray:
        return rng.random((users.shape[0], num_items + 1), dtype=np.float32)

    return score


def popularity_scorer(popularity: np.ndarray) -> ScoreFn:
    row = popularity.astype(np.float32)

    def score(users: np.ndarray, histories: list[np.ndarray], times: EventTimes | None = None) -> np.ndarray:
        return np.broadcast_to(row, (users.shape[0], row.shape[0])).copy()

    return score


@dataclass(frozen=True)
class Catalogue:
    """What the beyond-accuracy metrics measure lists against: training popularity per item index
    (``[N + 1]``, index 0 padding) and the number of training users."""

    popularity: np.ndarray
    num_users: int


@overload
def evaluate_scorer(score_fn: ScoreFn, eval_set: EvalSet, ks: tuple[int, ...] = ..., masked: bool = ...,
                    batch_size: int = ..., per_user: None = None,
                    catalogue: Catalogue | None = ...) -> dict[str, float]: ...
@overload
def evaluate_scorer(score_fn: ScoreFn, eval_set: EvalSet, ks: tuple[int, ...] = ..., masked: bool = ...,
                    batch_size: int = ..., *, per_user: str,
                    catalogue: Catalogue | None = ...) -> tuple[dict[str, float], np.ndarray]: ...
def evaluate_scorer(score_fn: ScoreFn, eval_set: EvalSet, ks: tuple[int, ...] = (10, 20), masked: bool = True,
                    batch_size: int = 512, per_user: str | None = None,
                    catalogue: Catalogue | None = None) -> dict[str, float] | tuple[dict[str, float], np.ndarray]:
    """Mean metrics @ks; with ``per_user="ndcg@10"`` also the per-user values (paired tests); with
    a ``catalogue`` also GAUC and the beyond-accuracy metrics @ks (coverage, Gini, entropy, tail
    share, average popularity, novelty) of the same lists."""
    if len(eval_set) == 0:
        raise DataError("the evaluation split is empty: no user has held-out events")
    ranking = rank_eval_set(score_fn, eval_set, max(ks), masked, batch_size, with_auc=catalogue is not None)
    metrics = ranking_metrics(ranking.top, eval_set.positives, ks)
    if catalogue is not None:
        assert ranking.auc is not None and ranking.pos_len is not None
        metrics["gauc"] = gauc(ranking.auc, ranking.pos_len)
        metrics.update(beyond_accuracy(ranking.top, ks, catalogue.popularity, catalogue.num_users))
    if per_user:
        name, k = per_user.split("@")
        return metrics, per_user_metric(ranking.top, eval_set.positives, name, int(k))
    return metrics


def evaluate_model(model: RecModel, eval_set: EvalSet, ks: tuple[int, ...] = (10, 20), masked: bool = True,
                   batch_size: int = 512) -> dict[str, float]:
    return evaluate_scorer(model_scorer(model), eval_set, ks, masked, batch_size)


@torch.no_grad()
def predict_pairs(model: RecModel, pairs: PairSet, batch_size: int = 2048) -> np.ndarray:
    """The model's score of each held-out (user, item) row (a rating under the MSE objective)."""
    model.eval()
    device, length = model.device, model.config.max_history
    out = []
    for begin in range(0, len(pairs), batch_size):
        end = begin + batch_size
        times = None if pairs.history_times is None or pairs.times is None else (
            pairs.history_times[begin:end], pairs.times[begin:end])
        encoded = model.encode_users(torch.as_tensor(pairs.users[begin:end], device=device),
                                     torch.as_tensor(pad_histories(pairs.histories[begin:end], length), device=device),
                                     time_tensors(model, times, length),
                                     search_tensors(model, pairs.users[begin:end], times))
        items = model.embed_items(torch.as_tensor(pairs.items[begin:end], device=device))
        out.append(model.interactor.score(encoded, items).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def evaluate_ratings(model: RecModel, pairs: PairSet | None, batch_size: int = 2048) -> dict[str, float]:
    """RMSE and MAE of predicted vs actual values (P-rating)."""
    if pairs is None or len(pairs) == 0:
        raise DataError("the rating evaluation split is empty")
    return rating_metrics(predict_pairs(model, pairs, batch_size), pairs.values)


def validation_score(model: RecModel, interactions: Interactions,
                     batch_size: int = 512) -> tuple[float, dict[str, float]]:
    """What early stopping maximises: NDCG@10 for ranking protocols, −RMSE for ratings."""
    if interactions.valid_pairs is not None:
        metrics = evaluate_ratings(model, interactions.valid_pairs)
        return -metrics["rmse"], metrics
    metrics = evaluate_model(model, interactions.valid, ks=(10,), masked=True, batch_size=batch_size)
    return metrics["ndcg@10"], metrics


def evaluate_interactions(model: RecModel, popularity: np.ndarray, interactions: Interactions,
                          ks: tuple[int, ...] = (10, 20), batch_size: int = 512,
                          extended: bool = False) -> dict[str, Any]:
    """Test metrics of the model beside popularity; P-seq adds RecBole's unmasked convention;
    P-rating reports RMSE/MAE beside the training mean rating. ``extended`` adds GAUC and the
    beyond-accuracy metrics to every ranking column (``recengine evaluate``; training skips them)."""
    if interactions.test_pairs is not None:
        pairs = interactions.test_pairs
        mean = float(interactions.values.mean())
        return {"test": evaluate_ratings(model, pairs),
                "mean_rating": rating_metrics(np.full(len(pairs), mean), pairs.values), "test_rows": len(pairs)}
    test = interactions.test
    catalogue = training_catalogue(interactions, len(popularity) - 1) if extended else None
    out: dict[str, Any] = {
        "test": evaluate_scorer(model_scorer(model), test, ks, True, batch_size, catalogue=catalogue),
        "popularity": evaluate_scorer(popularity_scorer(popularity), test, ks, True, batch_size,
                                      catalogue=catalogue),
        "test_users": len(test),
    }
    if test.candidates is not None:  # P-cold: chance is the honest baseline for unseen items
        runs = [evaluate_scorer(random_scorer(len(popularity) - 1, seed), test, ks, True, batch_size,
                                catalogue=catalogue)
                for seed in range(5)]
        out["random"] = {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
        out["cold_items"] = int(test.candidates.size)
    if interactions.test_unmasked:
        out["test_unmasked"] = evaluate_scorer(model_scorer(model), test, ks, False, batch_size)
        out["popularity_unmasked"] = evaluate_scorer(popularity_scorer(popularity), test, ks, False, batch_size)
    return out


def training_catalogue(interactions: Interactions, num_items: int) -> Catalogue:
    """Training interaction count per item index and the number of users with a training event."""
    counts = np.bincount(interactions.items, minlength=num_items + 1).astype(np.float64)
    return Catalogue(counts, int(np.unique(interactions.users).size))


def run_metrics(config: PipelineConfig, data: PreparedData, result: TrainResult,
                train_seconds: float) -> dict[str, Any]:
    """What a finished run reports: validation at the best epoch, test beside the
    baselines, and the training history (local, Ray and standalone runs alike)."""
    return {
        "protocol": config.train.protocol,
        "valid": result.best_valid,
        **evaluate_interactions(result.model, data.popularity, data.interactions),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "epoch_seconds": result.epoch_seconds,
        "train_seconds": train_seconds,
        "training_mode": result.mode,
        "history": result.history,
    }
