"""Beyond-accuracy metrics and per-segment breakdowns against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recengine.beyond_accuracy import (
    average_popularity,
    beyond_accuracy,
    entropy,
    gini_index,
    item_coverage,
    novelty,
    recommendation_counts,
    tail_items,
    tail_percentage,
)
from recengine.segments import item_deciles, per_decile, user_segments

# Five items; index 0 is padding. Training counts: item 1 most popular … item 5 never seen.
POPULARITY = np.array([0, 40, 30, 20, 10, 0], dtype=float)
# Two users' top-2 lists; the second is short (only one item left to recommend).
TOP = np.array([[1, 2], [1, -1]])


def test_counts_and_coverage_ignore_padding() -> None:
    assert recommendation_counts(TOP, 2, 5).tolist() == [0, 2, 1, 0, 0, 0]
    assert item_coverage(TOP, 2, 5) == pytest.approx(2 / 5)
    assert item_coverage(TOP, 1, 5) == pytest.approx(1 / 5)


def test_gini_index_hand_computed() -> None:
    # counts sorted ascending over all 5 items: [0, 0, 0, 1, 2], total 3
    # Σ (2i − n − 1)·c_i = (2·4 − 6)·1 + (2·5 − 6)·2 = 2 + 8 = 10; ÷ (n · total) = 10 / 15
    assert gini_index(TOP, 2, 5) == pytest.approx(10 / 15)
    even = np.array([[1, 2], [3, 4], [5, 1], [2, 3], [4, 5]])  # every item shown twice
    assert gini_index(even, 2, 5) == pytest.approx(0.0)
    one = np.array([[1], [1], [1]])  # one item takes every slot: (n−1)/n
    assert gini_index(one, 1, 5) == pytest.approx(4 / 5)


def test_entropy_hand_computed() -> None:
    # slots: item 1 twice, item 2 once → p = (2/3, 1/3)
    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert entropy(TOP, 2, 5) == pytest.approx(expected)
    assert entropy(np.array([[1], [1]]), 1, 5) == pytest.approx(0.0)


def test_tail_is_the_least_popular_fraction() -> None:
    # 0.6 of 5 items = 3: items 5 (0), 4 (10), 3 (20)
    assert np.nonzero(tail_items(POPULARITY, 0.6))[0].tolist() == [3, 4, 5]
    # ties go to the lower index first: counts all equal, the first 2 of 5 are the tail
    assert np.nonzero(tail_items(np.array([0, 1, 1, 1, 1, 1.0]), 0.4))[0].tolist() == [1, 2]
    with pytest.raises(ValueError, match="between 0 and 1"):
        tail_items(POPULARITY, 1.0)


def test_tail_percentage_per_user_then_mean() -> None:
    tail = tail_items(POPULARITY, 0.6)  # items 3, 4, 5
    top = np.array([[3, 1], [4, 5], [2, -1]])
    # user shares: 1/2, 2/2, 0/1 → mean 0.5
    assert tail_percentage(top, 2, tail) == pytest.approx(0.5)


def test_average_popularity_and_novelty() -> None:
    # user 1: (40 + 30) / 2 = 35; user 2: 40 → 37.5
    assert average_popularity(TOP, 2, POPULARITY) == pytest.approx(37.5)
    # novelty with 99 training users: p = (n + 1) / 100 over the three shown slots (1, 2, 1)
    information = [-math.log2(41 / 100), -math.log2(31 / 100), -math.log2(41 / 100)]
    assert novelty(TOP, 2, POPULARITY, 99) == pytest.approx(np.mean(information))
    # an item nobody touched is finite and the most novel
    assert novelty(np.array([[5]]), 1, POPULARITY, 99) == pytest.approx(-math.log2(1 / 100))


def test_beyond_accuracy_keys_and_empty_lists() -> None:
    out = beyond_accuracy(TOP, (1, 2), POPULARITY, 99)
    assert set(out) == {f"{name}@{k}" for name in ("coverage", "gini", "entropy", "tail_percentage",
                                                   "avg_popularity", "novelty") for k in (1, 2)}
    empty = beyond_accuracy(np.full((2, 2), -1), (2,), POPULARITY, 99)
    assert empty["coverage@2"] == 0.0
    assert all(math.isnan(empty[key]) for key in ("gini@2", "entropy@2", "tail_percentage@2", "novelty@2"))
    with pytest.raises(ValueError, match="outside the lists' width"):
        beyond_accuracy(TOP, (3,), POPULARITY, 99)


def test_user_segments_by_history_length() -> None:
    segments = user_segments(np.array([0, 3, 4, 10, 11, 60]), (3, 10))
    assert [s.name for s in segments] == ["cold", "light", "heavy"]
    assert [s.rows.tolist() for s in segments] == [[0, 1], [2, 3], [4, 5]]
    assert [s.label for s in segments] == ["cold (≤ 3 events)", "light (4–10 events)", "heavy (> 10 events)"]
    with pytest.raises(ValueError, match="increasing"):
        user_segments(np.array([1]), (10, 10))


def test_item_deciles_and_per_decile_breakdown() -> None:
    popularity = np.concatenate([[0], np.arange(1, 21, dtype=float)])  # item i has i events
    deciles = item_deciles(popularity)
    assert deciles[0] == 0
    assert deciles[1:].tolist() == [d for d in range(1, 11) for _ in range(2)]
    top = np.array([[20, 19], [20, 1]])
    positives = [np.array([19, 2]), np.array([1])]
    rows = per_decile(top, positives, deciles, 2)
    by = {row["decile"]: row for row in rows}
    assert by[10]["positives"] == 1 and by[10]["recall@2"] == 1.0  # item 19 found
    assert by[1]["positives"] == 2 and by[1]["recall@2"] == 0.5  # item 1 found, item 2 not
    assert by[10]["slot_share"] == pytest.approx(3 / 4) and by[1]["slot_share"] == pytest.approx(1 / 4)
    assert math.isnan(by[5]["recall@2"])  # no held-out item there
    assert sum(row["positive_share"] for row in rows) == pytest.approx(1.0)
