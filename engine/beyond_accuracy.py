"""Beyond-accuracy metrics of recommended lists: how much of the catalogue they show, how evenly,
and how far from the blockbusters.

Every function takes ``top`` -- ``[U, K']`` item indices, best first, ``-1`` where a list is
shorter (as :func:`recengine.metrics.topk_from_scores` returns it) -- and a cut-off ``k``; only
the first ``k`` columns count and ``-1`` entries are never items. ``popularity[i]`` is item ``i``'s
number of training interactions (index 0 is the padding item, never counted in the catalogue).

Coverage, Gini index, Shannon entropy, tail percentage and average popularity follow RecBole
1.2.1's ``ItemCoverage``/``GiniIndex``/``ShannonEntropy``/``TailPercentage``/``AveragePopularity``
definitions, with stated differences: the catalogue size excludes the padding item (RecBole
counts it); shorter lists contribute only the items they hold; the entropy is the plain Shannon
entropy of the recommended slots (RecBole divides it by the number of distinct items shown); items
without a training event belong to the tail. Novelty is the mean
self-information of the recommended items (Zhou et al., 2010), which RecBole does not compute.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BEYOND_ACCURACY_METRICS",
    "average_popularity",
    "beyond_accuracy",
    "entropy",
    "gini_index",
    "item_coverage",
    "novelty",
    "recommendation_counts",
    "tail_items",
    "tail_percentage",
]

#: The names :func:`beyond_accuracy` reports, each suffixed ``@k``.
BEYOND_ACCURACY_METRICS: tuple[str, ...] = (
    "coverage", "gini", "entropy", "tail_percentage", "avg_popularity", "novelty",
)

#: The least popular share of the catalogue that is the long tail by default (the 80/20 convention).
DEFAULT_TAIL_FRACTION = 0.8


def _cut(top: np.ndarray, k: int) -> np.ndarray:
    top = np.asarray(top, dtype=np.int64)
    if top.ndim != 2:
        raise ValueError(f"top must be 2-D [users, K], got shape {top.shape}")
    if not 1 <= k <= top.shape[1]:
        raise ValueError(f"k={k} is outside the lists' width {top.shape[1]}")
    return top[:, :k]


def recommendation_counts(top: np.ndarray, k: int, num_items: int) -> np.ndarray:
    """``[num_items + 1]``: how many of the users' top-``k`` lists hold each item (index 0 unused)."""
    items = _cut(top, k)
    items = items[items > 0]
    if items.size and items.max() > num_items:
        raise ValueError(f"top holds item index {int(items.max())} beyond the catalogue of {num_items}")
    return np.bincount(items, minlength=num_items + 1)


def item_coverage(top: np.ndarray, k: int, num_items: int) -> float:
    """Share of the catalogue's items that appear in at least one top-``k`` list."""
    return float((recommendation_counts(top, k, num_items)[1:] > 0).sum() / num_items) if num_items else math.nan


def gini_index(top: np.ndarray, k: int, num_items: int) -> float:
    """Gini index of how often each catalogue item is recommended: 0 when every item is shown
    equally often, towards 1 when a few items take every slot (items never shown count as 0)."""
    counts = np.sort(recommendation_counts(top, k, num_items)[1:])
    total = counts.sum()
    if total == 0:
        return math.nan
    index = np.arange(1, num_items + 1)
    return float(((2 * index - num_items - 1) * counts).sum() / (num_items * total))


def entropy(top: np.ndarray, k: int, num_items: int) -> float:
    """Shannon entropy (natural log) of the distribution of recommended slots over items."""
    counts = recommendation_counts(top, k, num_items)[1:]
    counts = counts[counts > 0]
    if counts.size == 0:
        return math.nan
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def tail_items(popularity: np.ndarray, fraction: float = DEFAULT_TAIL_FRACTION) -> np.ndarray:
    """Boolean ``[N + 1]``: the long tail -- the least popular ``fraction`` of the catalogue's items,
    by training interaction count (ties by lower index; at least one item), as RecBole's
    ``tail_ratio`` < 1 cuts it. 0.8: everything but the 20 % most popular items, the 80/20 head/tail
    convention. Items no training event touched are in the tail (RecBole only ranks items it saw).
    Index 0 is never in the tail."""
    if not 0 < fraction < 1:
        raise ValueError(f"the tail fraction must be between 0 and 1 (exclusive), got {fraction}")
    pop = np.asarray(popularity, dtype=np.float64)[1:]
    order = np.lexsort((np.arange(pop.size), pop))  # least popular first, then lower index
    tail = np.zeros(pop.size + 1, dtype=bool)
    tail[order[:max(int(pop.size * fraction), 1)] + 1] = True
    return tail


def tail_percentage(top: np.ndarray, k: int, tail: np.ndarray) -> float:
    """Mean over users of the share of their top-``k`` list's items that are long-tail items."""
    items = _cut(top, k)
    real = items > 0
    shown = real.sum(axis=1)
    in_tail = (tail[np.where(real, items, 0)] & real).sum(axis=1)
    keep = shown > 0
    return float((in_tail[keep] / shown[keep]).mean()) if keep.any() else math.nan


def average_popularity(top: np.ndarray, k: int, popularity: np.ndarray) -> float:
    """Mean over users of the mean training popularity (interaction count) of their top-``k`` items."""
    items = _cut(top, k)
    real = items > 0
    values = np.where(real, np.asarray(popularity, dtype=np.float64)[np.where(real, items, 0)], 0.0)
    shown = real.sum(axis=1)
    keep = shown > 0
    return float((values.sum(axis=1)[keep] / shown[keep]).mean()) if keep.any() else math.nan


def novelty(top: np.ndarray, k: int, popularity: np.ndarray, num_users: int) -> float:
    """Mean self-information ``−log2 p(i)`` of the recommended items, ``p(i) = (n_i + 1) / (U + 1)``:
    the share of the ``num_users`` training users who interacted with item ``i``, add-one smoothed
    so an item nobody touched is finite. Higher: less obvious recommendations."""
    items = _cut(top, k)
    real = items > 0
    if not real.any():
        return math.nan
    share = (np.asarray(popularity, dtype=np.float64) + 1.0) / (num_users + 1.0)
    information = -np.log2(np.minimum(share, 1.0))
    return float(information[items[real]].mean())


def beyond_accuracy(top: np.ndarray, ks: tuple[int, ...], popularity: np.ndarray, num_users: int,
                    tail_fraction: float = DEFAULT_TAIL_FRACTION) -> dict[str, float]:
    """Every beyond-accuracy metric at every ``k`` in ``ks``, keyed ``"coverage@10"`` etc.

    ``popularity`` is ``[N + 1]`` training interaction counts (index 0 padding), ``num_users`` the
    number of training users (novelty's denominator)."""
    num_items = len(popularity) - 1
    tail = tail_items(popularity, tail_fraction)
    out: dict[str, float] = {}
    for k in ks:
        out[f"coverage@{k}"] = item_coverage(top, k, num_items)
        out[f"gini@{k}"] = gini_index(top, k, num_items)
        out[f"entropy@{k}"] = entropy(top, k, num_items)
        out[f"tail_percentage@{k}"] = tail_percentage(top, k, tail)
        out[f"avg_popularity@{k}"] = average_popularity(top, k, popularity)
        out[f"novelty@{k}"] = novelty(top, k, popularity, num_users)
    return out
