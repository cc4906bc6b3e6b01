"""Evaluation metrics: full-ranking top-K, ranking metrics, rating metrics and significance tests.

The top-K ranking metrics (Hit, MRR, Recall, Precision, NDCG, MAP) and GAUC are defined identically to RecBole 1.2.1
(``recbole/evaluator/metrics.py``) so that numbers produced here can be compared with RecBole's. Like
RecBole, every metric is computed from two arrays:

* ``pos_index`` -- bool ``[n_users, K]``: whether the item at rank ``k`` (0-based column) is a positive;
* ``pos_len``   -- int ``[n_users]``: the number of distinct positives of each user,

and each metric is averaged over users with at least one positive (RecBole drops such users from the
evaluation data; here they are skipped explicitly). Unlike RecBole, values are not rounded.

Item index 0 is the padding item throughout: it is never ranked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

try:  # torch is a dependency, but the metrics themselves never need it.
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]  # the usual optional-import fallback

__all__ = [
    "RANKING_METRICS",
    "PopularityBaseline",
    "gauc",
    "mask_scores",
    "user_auc",
    "mean_std",
    "paired_test",
    "per_user_metric",
    "positives_matrix",
    "ranking_metrics",
    "rating_metrics",
    "topk_from_scores",
]

#: Names accepted by :func:`per_user_metric`, in the order :func:`ranking_metrics` reports them.
RANKING_METRICS: tuple[str, ...] = ("recall", "ndcg", "hit", "mrr", "precision", "map")


def _to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors are detached and moved to the CPU)."""
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------------------------------
# Full-ranking top-K
# ----------------------------------------------------------------------------------------------------


def topk_from_scores(
    scores: np.ndarray | torch.Tensor,
    k: int,
    exclude: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Top-``k`` item indices of each row of ``scores`` ``[B, N]``, best first, as int64 ``[B, k]``.

    This is RecBole's full-sort ranking: ``exclude[b]`` (e.g. the user's training items) and column 0
    (the padding item) are set to ``-inf`` before taking the top ``k``, so already-seen items and the
    padding item are never recommended. NaN scores are treated as ``-inf``.

    Ties are broken deterministically by the lower item index (a stable descending sort), so results do
    not depend on the backend's ``topk`` implementation; RecBole uses ``torch.topk``, whose order among
    exactly equal scores is unspecified -- the only place where the two can differ.

    If a row has fewer than ``k`` items with a finite score (after exclusion), or ``k`` exceeds the
    catalogue, the remaining slots are filled with ``-1``, which is never a positive; so excluded
    items and index 0 truly never appear.
    (RecBole would fill those slots with arbitrary ``-inf`` items instead.)

    Vectorised: ``torch.topk`` picks the candidates (rows with ties straddling the k-th place are
    re-selected exactly with ``np.partition``), then an O(B*k log k) sort orders them.
    """
    s = _to_numpy(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D [B, N], got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    b, n = s.shape
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n - 1:  # K wider than the catalogue: every item is ranked, the rest of the list is -1
        if n < 2:
            raise ValueError(f"scores have {n} column(s): no rankable item (column 0 is padding)")
        top = topk_from_scores(s, n - 1, exclude)
        return np.concatenate([top, np.full((b, k - (n - 1)), -1, dtype=np.int64)], axis=1)

    s = mask_scores(s, exclude)

    if torch is not None:
        # Fast path: torch.topk, then re-sort its k results by (score desc, index asc). This is exact
        # unless a row has more items tied at its k-th value than fit, where torch's choice among the
        # tied items is arbitrary; those rows are redone by the exact selection below.
        vals_t, idx_t = torch.topk(torch.from_numpy(s), k, dim=1, sorted=False)
        vals, idx = vals_t.numpy(), idx_t.numpy().astype(np.int64)
        kth = vals.min(axis=1, keepdims=True)
        boundary_ties = ((s >= kth).sum(axis=1) > k) & np.isfinite(kth[:, 0])
        if boundary_ties.any():
            rows = np.nonzero(boundary_ties)[0]
            idx[rows] = _exact_topk_candidates(s[rows], k)
            vals[rows] = np.take_along_axis(s[rows], idx[rows], axis=1)
    else:
        idx = _exact_topk_candidates(s, k)
        vals = np.take_along_axis(s, idx, axis=1)
    order = np.lexsort((idx, -vals))  # last key is primary: score desc, then lower index first
    top = np.take_along_axis(idx, order, axis=1)
    top[~np.isfinite(np.take_along_axis(vals, order, axis=1))] = -1
    return top


def mask_scores(scores: np.ndarray, exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """A copy of ``scores`` ``[B, N]`` with what is never ranked set to ``-inf``: NaN scores, column 0
    (the padding item) and ``exclude[b]`` (e.g. user ``b``'s training items)."""
    s = np.array(scores, copy=True)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    b, n = s.shape
    s[np.isnan(s)] = -np.inf
    s[:, 0] = -np.inf
    if exclude is not None:
        if len(exclude) != b:
            raise ValueError(f"exclude has {len(exclude)} rows but scores has {b}")
        cols = [np.asarray(e, dtype=np.int64).ravel() for e in exclude]
        lens = np.fromiter((c.size for c in cols), dtype=np.int64, count=b)
        if lens.sum():
            flat = np.concatenate(cols)
            if flat.min() < 0 or flat.max() >= n:
                raise ValueError(f"exclude holds item indices outside [0, {n})")
            s[np.repeat(np.arange(b), lens), flat] = -np.inf
    return s


def _exact_topk_candidates(s: np.ndarray, k: int) -> np.ndarray:
    """The set of each row's top-``k`` indices (unordered) [B, k], ties at the k-th value by lower index.

    O(B*N): ``np.partition`` finds the k-th largest value; everything strictly above it is taken, and
    of the items equal to it the lowest indices fill the remaining slots.
    """
    b = s.shape[0]
    kth = -np.partition(-s, k - 1, axis=1)[:, k - 1 : k]  # [B, 1]
    above = s > kth
    need = k - above.sum(axis=1, keepdims=True)  # how many of the tied items to take, >= 1
    tied = s == kth
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
    # np.nonzero is row-major, so each row's k chosen indices come out in ascending order.
    return np.nonzero(chosen)[1].reshape(b, k).astype(np.int64, copy=False)


# ----------------------------------------------------------------------------------------------------
# Ranking metrics (identical to RecBole 1.2.1)
# ----------------------------------------------------------------------------------------------------


def positives_matrix(
    topk: np.ndarray | torch.Tensor, positives: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """RecBole's ``(pos_index, pos_len)`` for a top-K list and each user's positive items.

    ``pos_index[b, j]`` is True when ``topk[b, j]`` is one of ``positives[b]``; ``pos_len[b]`` is the
    number of *distinct* positives of user ``b`` (RecBole builds a 0/1 user-item matrix and sums its
    rows, so duplicates count once). Padding entries (``-1``) in ``topk`` are never positives.
    """
    top = _to_numpy(topk).astype(np.int64, copy=False)
    if top.ndim != 2:
        raise ValueError(f"topk must be 2-D [B, K], got shape {top.shape}")
    b = top.shape[0]
    if len(positives) != b:
        raise ValueError(f"positives has {len(positives)} rows but topk has {b}")
    pos = [np.asarray(_to_numpy(p), dtype=np.int64).ravel() for p in positives]
    lens = np.fromiter((p.size for p in pos), dtype=np.int64, count=b)
    flat = np.concatenate(pos) if lens.sum() else np.zeros(0, dtype=np.int64)
    if flat.size and flat.min() < 0:
        raise ValueError("positives must be non-negative item indices")
    # Encode (user, item) pairs as one int64 key so a single np.isin answers every membership test.
    width = int(max(top.max(initial=0), flat.max(initial=0))) + 2
    pos_keys = np.unique(np.repeat(np.arange(b, dtype=np.int64), lens) * width + flat)
    pos_len = np.bincount(pos_keys // width, minlength=b).astype(np.int64)
    top_keys = np.arange(b, dtype=np.int64)[:, None] * width + top
    pos_index = np.isin(top_keys, pos_keys) & (top >= 0)
    return pos_index, pos_len


def _metric_from_pos(name: str, pos_index: np.ndarray, pos_len: np.ndarray, k: int) -> np.ndarray:
    """Per-user value of metric ``name`` at cut-off ``k`` (RecBole 1.2.1's ``metric_info`` column k-1)."""
    hits = pos_index[:, :k]
    n_hits = hits.sum(axis=1)
    if name == "hit":  # RecBole Hit: 1 if any positive within the top k
        return (n_hits > 0).astype(np.float64)
    if name == "mrr":  # RecBole MRR: 1 / rank of the first positive within the top k, else 0
        first = hits.argmax(axis=1)
        return np.where(n_hits > 0, 1.0 / (first + 1), 0.0)
    if name == "recall":  # RecBole Recall: hits / pos_len
        return n_hits / pos_len
    if name == "precision":  # RecBole Precision: hits / k
        return n_hits / k
    if name == "ndcg":
        # RecBole NDCG: DCG = sum over hit ranks r of 1/log2(r+1); IDCG = sum_{i=1}^{min(pos_len, k)}
        # 1/log2(i+1) -- the ideal list can hold at most k positives.
        disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
        dcg = hits @ disc
        idcg = np.cumsum(disc)[np.minimum(pos_len, k) - 1]
        return dcg / idcg
    if name == "map":
        # RecBole MAP: sum over hit ranks r <= k of precision@r, divided by min(pos_len, k) -- the
        # most positives a list of k can hold.
        precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
        return (precision_at * hits).sum(axis=1) / np.minimum(pos_len, k)
    raise ValueError(f"unknown ranking metric {name!r}; expected one of {RANKING_METRICS}")


def _valid(topk: np.ndarray, positives: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``pos_index``/``pos_len`` restricted to users with at least one positive, with ``k`` checked."""
    pos_index, pos_len = positives_matrix(topk, positives)
    if not 1 <= k <= pos_index.shape[1]:
        raise ValueError(f"k={k} is outside the top-K list's width {pos_index.shape[1]}")
    keep = pos_len > 0
    return pos_index[keep], pos_len[keep]


def per_user_metric(
    topk: np.ndarray | torch.Tensor, positives: Sequence[np.ndarray], name: str, k: int
) -> np.ndarray:
    """Per-user values of ranking metric ``name`` (``recall``/``ndcg``/``hit``/``mrr``/``precision``) @k.

    One value per user with at least one positive, in input order (users without positives are
    skipped, as in :func:`ranking_metrics`), so two models evaluated on the same ``positives`` give
    aligned arrays for :func:`paired_test`. Their mean equals the corresponding
    :func:`ranking_metrics` entry. Definitions identical to RecBole 1.2.1.
    """
    pos_index, pos_len = _valid(_to_numpy(topk), positives, k)
    return _metric_from_pos(name, pos_index, pos_len, k)


def ranking_metrics(
    topk: np.ndarray | torch.Tensor,
    positives: Sequence[np.ndarray],
    ks: tuple[int, ...] = (10, 20),
) -> dict[str, float]:
    """Mean Recall, NDCG, Hit, MRR and Precision at every ``k`` in ``ks``, keyed ``"recall@10"`` etc.

    ``topk`` is ``[B, K]`` (``K >= max(ks)``) as returned by :func:`topk_from_scores`; ``positives[b]``
    holds user ``b``'s held-out items. Definitions identical to RecBole 1.2.1; each user with at least
    one positive counts once, users without positives are skipped. Returns NaN for every metric when
    no user has a positive.
    """
    top = _to_numpy(topk)
    out: dict[str, float] = {}
    for k in ks:
        pos_index, pos_len = _valid(top, positives, k)
        for name in RANKING_METRICS:
            vals = _metric_from_pos(name, pos_index, pos_len, k)
            out[f"{name}@{k}"] = float(vals.mean()) if vals.size else math.nan
    return out


# ----------------------------------------------------------------------------------------------------
# GAUC (RecBole 1.2.1): per-user AUC over the full ranking, weighted by the user's positives
# ----------------------------------------------------------------------------------------------------


def user_auc(scores: np.ndarray | torch.Tensor, positives: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each user's AUC among the items it can be ranked against, and its number of rankable positives.

    ``scores`` is ``[B, N]`` with ``-inf`` where an item is not rankable (column 0, excluded and
    non-candidate items: :func:`mask_scores`); ``positives[b]`` are user ``b``'s held-out items. The
    AUC is the share of (positive, negative) pairs the scores order correctly, ties counting one
    half -- RecBole's ``((n + 1)·P − P(P + 1)/2 − Σ rank(pos)) / (P·(n − P))`` over average ranks.
    Negatives are the rankable items that are not positives. A positive that is not rankable (an
    item the user already had, excluded from its ranking) says nothing about the ranking and is left
    out: the returned count is of rankable positives, GAUC's weight. Where no positive is excluded
    -- every dataset without repeat interactions, ml-100k among them -- this is RecBole's GAUC
    exactly; RecBole would rank an excluded positive among the ``-inf`` scores instead. Users without
    a rankable positive or without a negative get NaN (RecBole drops them, as :func:`gauc` does).
    """
    s = np.asarray(_to_numpy(scores), dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D [B, N], got shape {s.shape}")
    b, n = s.shape
    if len(positives) != b:
        raise ValueError(f"positives has {len(positives)} rows but scores has {b}")
    pos = [np.unique(np.asarray(_to_numpy(p), dtype=np.int64).ravel()) for p in positives]
    pos_len = np.fromiter((p.size for p in pos), dtype=np.int64, count=b)
    widest = int(pos_len.max(initial=0))
    if widest == 0:
        return np.full(b, np.nan), np.zeros(b, dtype=np.int64)
    flat = np.concatenate(pos)
    if flat.min() < 0 or flat.max() >= n:
        raise ValueError(f"positives hold item indices outside [0, {n})")
    slot = np.arange(widest)[None, :] < pos_len[:, None]  # [B, P]: which padded slots are real
    index = np.zeros((b, widest), dtype=np.int64)
    index[slot] = flat
    rankable = np.isfinite(s)
    pos_scores = np.where(slot, np.take_along_axis(s, index, axis=1), np.nan)
    pos_scores[~np.isfinite(pos_scores)] = np.nan  # unrankable positives never win a pair
    ranked = np.where(rankable, s, np.nan)
    below, tied = _count_below_and_tied(ranked, pos_scores)
    # take out the pairs a positive forms with the user's other positives (and with itself)
    below -= (pos_scores[:, None, :] < pos_scores[:, :, None]).sum(axis=2)
    tied -= (pos_scores[:, None, :] == pos_scores[:, :, None]).sum(axis=2)
    ranked_pos = np.isfinite(pos_scores).sum(axis=1)
    negatives = rankable.sum(axis=1) - ranked_pos
    wins = np.where(np.isfinite(pos_scores), below + 0.5 * tied, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.where((ranked_pos > 0) & (negatives > 0), wins / (ranked_pos * negatives), np.nan)
    return auc, ranked_pos


def _count_below_and_tied(ranked: np.ndarray, pos_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[B, P]`` counts of each row's non-NaN items scored below / equal to each positive's score.

    Few positives: compared column by column (O(N·P)); many: each row sorted once and searched."""
    b, widest = pos_scores.shape
    if widest <= 16:
        below = np.stack([(ranked < pos_scores[:, j:j + 1]).sum(axis=1) for j in range(widest)], axis=1)
        tied = np.stack([(ranked == pos_scores[:, j:j + 1]).sum(axis=1) for j in range(widest)], axis=1)
        return below.astype(np.float64), tied.astype(np.float64)
    ordered = np.sort(ranked, axis=1)  # NaN (unrankable) last, never counted below a finite score
    below, tied = np.zeros((b, widest)), np.zeros((b, widest))
    for row in range(b):
        left = np.searchsorted(ordered[row], pos_scores[row], side="left")
        right = np.searchsorted(ordered[row], pos_scores[row], side="right")
        below[row], tied[row] = left, right - left
    # a NaN positive score lands past the end: it neither wins nor ties
    lost = np.isnan(pos_scores)
    below[lost], tied[lost] = 0.0, 0.0
    return below, tied


def gauc(auc: np.ndarray, pos_len: np.ndarray) -> float:
    """RecBole's GAUC: the users' AUCs averaged with their numbers of positives as weights.

    Users whose AUC is undefined (NaN: no positive or no negative) are left out; NaN when none is left.
    """
    a, w = np.asarray(auc, dtype=np.float64), np.asarray(pos_len, dtype=np.float64)
    keep = np.isfinite(a) & (w > 0)
    return float((a[keep] * w[keep]).sum() / w[keep].sum()) if keep.any() else math.nan


# ----------------------------------------------------------------------------------------------------
# Significance, rating metrics, aggregation over seeds
# ----------------------------------------------------------------------------------------------------


def paired_test(a: np.ndarray, b: np.ndarray, *, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Compare two models' per-user metric values on the same users (``a[i]`` and ``b[i]`` pair up).

    Returns ``mean_a``, ``mean_b``, ``mean_diff`` (a - b), ``n``, the two-sided paired t-test p-value
    ``t_pvalue`` (``scipy.stats.ttest_rel``), the Wilcoxon signed-rank p-value ``wilcoxon_pvalue``
    (``scipy.stats.wilcoxon``, zero differences dropped), since per-user ranking metrics are far from
    normal, and ``ci_low``/``ci_high``: a percentile bootstrap 95 % interval of the mean difference
    (``scipy.stats.bootstrap``, ``resamples`` resamples of the users, seeded: the same inputs give the
    same interval). Degenerate cases are resolved instead of returning NaN: identical inputs give
    p = 1; a constant difference gives t-test p = 0 (or 1 when it is zero) and a zero-width interval.
    """
    from scipy import stats

    x = np.asarray(_to_numpy(a), dtype=np.float64).ravel()
    y = np.asarray(_to_numpy(b), dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    if x.size < 2:
        raise ValueError("paired_test needs at least two pairs")
    d = x - y
    if np.all(d == d[0]):  # zero variance of the differences: the tests are undefined
        t_p = 1.0 if d[0] == 0 else 0.0
        low = high = float(d[0])
    else:
        t_p = float(stats.ttest_rel(x, y).pvalue)
        interval = stats.bootstrap((d,), np.mean, n_resamples=resamples, confidence_level=0.95,
                                   method="percentile", rng=np.random.default_rng(seed)).confidence_interval
        low, high = float(interval.low), float(interval.high)
    if np.all(d == 0):
        w_p = 1.0
    else:
        w_p = float(stats.wilcoxon(x, y, zero_method="wilcox").pvalue)
    return {
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "mean_diff": float(d.mean()),
        "n": float(x.size),
        "t_pvalue": t_p,
        "wilcoxon_pvalue": w_p,
        "ci_low": low,
        "ci_high": high,
    }


def rating_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """RMSE and MAE of predicted vs actual ratings over all pairs (as RecBole 1.2.1's RMSE/MAE)."""
    p = np.asarray(_to_numpy(predicted), dtype=np.float64).ravel()
    t = np.asarray(_to_numpy(actual), dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"predicted and actual differ in length: {p.size} vs {t.size}")
    if p.size == 0:
        raise ValueError("rating_metrics needs at least one pair")
    err = p - t
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def mean_std(runs: Sequence[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and sample standard deviation (ddof=1) of each metric across runs (e.g. seeds).

    Every run must report the same metric names. A single run has std 0.0, since there is no spread
    to estimate.
    """
    if not runs:
        raise ValueError("mean_std needs at least one run")
    keys = list(runs[0])
    for r in runs[1:]:
        if set(r) != set(keys):
            raise ValueError(f"runs report different metrics: {sorted(keys)} vs {sorted(r)}")
    out: dict[str, tuple[float, float]] = {}
    for key in keys:
        v = np.array([r[key] for r in runs], dtype=np.float64)
        out[key] = (float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0)
    return out


# ----------------------------------------------------------------------------------------------------
# Popularity baseline
# ----------------------------------------------------------------------------------------------------


class PopularityBaseline:
    """Most-popular recommender: scores every item by its number of training interactions.

    Its :meth:`scores` output has the same ``[B, N+1]`` shape as a model's full-ranking scores, so the
    evaluator ranks it with :func:`topk_from_scores` exactly like a model (training items excluded,
    ties by lower index). Index 0 is the padding item and scores ``-inf``.
    """

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, train_items: np.ndarray, num_items: int) -> PopularityBaseline:
        """Count each item index (1..num_items) among the training interactions ``train_items``."""
        items = np.asarray(_to_numpy(train_items), dtype=np.int64).ravel()
        if items.size and (items.min() < 0 or items.max() > num_items):
            raise ValueError(f"train_items hold indices outside [0, {num_items}]")
        counts = np.bincount(items, minlength=num_items + 1).astype(np.float64)
        counts[0] = -np.inf
        self.counts = counts
        return self

    def scores(self, batch_size: int) -> np.ndarray:
        """``[batch_size, num_items+1]`` float64: the same popularity row for every user."""
        if self.counts is None:
            raise RuntimeError("PopularityBaseline.fit must be called before scores")
        return np.tile(self.counts, (batch_size, 1))
