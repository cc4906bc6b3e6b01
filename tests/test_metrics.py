"""Tests for recengine.metrics: hand-computed ranking metrics (RecBole 1.2.1 definitions), top-K, stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import recengine.metrics as metrics_module
from recengine.metrics import (
    RANKING_METRICS,
    PopularityBaseline,
    gauc,
    mask_scores,
    mean_std,
    paired_test,
    per_user_metric,
    positives_matrix,
    ranking_metrics,
    rating_metrics,
    topk_from_scores,
    user_auc,
)


def _log2(x: float) -> float:
    return math.log2(x)


# ---------------------------------------------------------------------------------------------------
# Hand-computed ranking metrics
# ---------------------------------------------------------------------------------------------------


def test_hand_computed_hits_at_ranks_1_and_3_of_5_with_pos_len_4() -> None:
    # Top-5 list [10, 11, 12, 13, 14]; positives {10, 12, 98, 99}: hits at ranks 1 and 3, pos_len 4.
    topk = np.array([[10, 11, 12, 13, 14]])
    positives = [np.array([10, 12, 98, 99])]
    pos_index, pos_len = positives_matrix(topk, positives)
    assert pos_index.tolist() == [[True, False, True, False, False]]
    assert pos_len.tolist() == [4]

    m = ranking_metrics(topk, positives, ks=(5,))
    # hit@5 = 1 (at least one positive in the top 5)
    assert m["hit@5"] == pytest.approx(1.0)
    # mrr@5 = 1/1 (first positive at rank 1)
    assert m["mrr@5"] == pytest.approx(1.0)
    # recall@5 = 2 hits / 4 positives = 0.5
    assert m["recall@5"] == pytest.approx(0.5)
    # precision@5 = 2 hits / 5 slots = 0.4
    assert m["precision@5"] == pytest.approx(0.4)
    # DCG = 1/log2(1+1) + 1/log2(3+1) = 1 + 0.5 = 1.5
    # IDCG over min(pos_len=4, K=5) = 4 ranks = 1 + 1/log2(3) + 1/log2(4) + 1/log2(5) ~= 2.561606
    # NDCG = 1.5 / 2.561606 ~= 0.585570
    idcg = 1 + 1 / _log2(3) + 1 / _log2(4) + 1 / _log2(5)
    assert idcg == pytest.approx(2.561606, abs=1e-6)
    assert m["ndcg@5"] == pytest.approx(1.5 / idcg)
    assert m["ndcg@5"] == pytest.approx(0.585570, abs=1e-6)


def test_hand_computed_first_hit_at_rank_2_and_cutoffs() -> None:
    # Top-4 [5, 6, 7, 8]; positives {6, 8}: hits at ranks 2 and 4, pos_len 2.
    topk = np.array([[5, 6, 7, 8]])
    positives = [np.array([6, 8])]
    m = ranking_metrics(topk, positives, ks=(1, 2, 4))
    # @1: nothing in the top 1
    assert [m[f"{n}@1"] for n in RANKING_METRICS] == [0.0] * len(RANKING_METRICS)
    # @2: hit 1; mrr 1/2; recall 1/2; precision 1/2
    # ndcg: DCG = 1/log2(3); IDCG over min(2, 2) = 1 + 1/log2(3)
    assert m["hit@2"] == 1.0
    assert m["mrr@2"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["precision@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((1 / _log2(3)) / (1 + 1 / _log2(3)))
    # @4: mrr still 1/2 (first hit); recall 2/2; precision 2/4
    # ndcg: DCG = 1/log2(3) + 1/log2(5); IDCG over min(2, 4) = 2 ranks = 1 + 1/log2(3)
    assert m["mrr@4"] == pytest.approx(0.5)
    assert m["recall@4"] == pytest.approx(1.0)
    assert m["precision@4"] == pytest.approx(0.5)
    assert m["ndcg@4"] == pytest.approx((1 / _log2(3) + 1 / _log2(5)) / (1 + 1 / _log2(3)))


def test_idcg_uses_min_pos_len_k() -> None:
    # 5 positives but K = 2, both top slots are positives: IDCG has only 2 terms (RecBole's
    # idcg_len = min(pos_len, K)), so NDCG@2 = 1 even though recall@2 = 2/5.
    topk = np.array([[1, 2, 3]])
    positives = [np.array([1, 2, 7, 8, 9])]
    m = ranking_metrics(topk, positives, ks=(2,))
    assert m["ndcg@2"] == pytest.approx(1.0)
    assert m["recall@2"] == pytest.approx(0.4)
    # With a single positive at rank 2 of K=3: IDCG = 1 (min(1, 3) = 1 term), DCG = 1/log2(3).
    m = ranking_metrics(np.array([[4, 1, 3]]), [np.array([1])], ks=(3,))
    assert m["ndcg@3"] == pytest.approx(1 / _log2(3))


def test_averaging_over_users_and_skipping_users_without_positives() -> None:
    topk = np.array([[1, 2], [3, 4], [5, 6]])
    positives = [np.array([1]), np.array([], dtype=np.int64), np.array([9])]
    # user 0: hit 1, mrr 1; user 1: no positives -> skipped; user 2: no hit -> 0. Mean over 2 users.
    m = ranking_metrics(topk, positives, ks=(2,))
    assert m["hit@2"] == pytest.approx(0.5)
    assert m["mrr@2"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["precision@2"] == pytest.approx(0.25)  # (1/2 + 0) / 2
    assert per_user_metric(topk, positives, "hit", 2).tolist() == [1.0, 0.0]
    # Nobody has positives -> NaN rather than a misleading 0.
    empty = ranking_metrics(topk, [np.array([], dtype=np.int64)] * 3, ks=(2,))
    assert all(math.isnan(v) for v in empty.values())


def test_duplicate_positives_count_once() -> None:
    pos_index, pos_len = positives_matrix(np.array([[3, 4]]), [np.array([3, 3, 5])])
    assert pos_len.tolist() == [2]
    assert pos_index.tolist() == [[True, False]]


def test_perfect_ranking_is_one_and_no_hits_is_zero() -> None:
    rng = np.random.default_rng(0)
    n_users, k = 20, 10
    topk = np.stack([rng.permutation(np.arange(1, 101))[:k] for _ in range(n_users)])
    # Perfect: every one of the top k is a positive (pos_len = k) -> all metrics 1.
    perfect = [row.copy() for row in topk]
    m = ranking_metrics(topk, perfect, ks=(5, 10))
    assert all(v == pytest.approx(1.0) for key, v in m.items() if key != "recall@5"), m
    assert m["recall@5"] == pytest.approx(0.5)  # 5 of the 10 positives fit in the top 5
    # Perfect w.r.t. fewer positives: positives are exactly the first 3 ranks -> all but precision = 1.
    first3 = [row[:3].copy() for row in topk]
    m = ranking_metrics(topk, first3, ks=(10,))
    for name in ("recall", "ndcg", "hit", "mrr"):
        assert m[f"{name}@10"] == pytest.approx(1.0)
    assert m["precision@10"] == pytest.approx(0.3)
    # No hits: positives are items never recommended -> all metrics 0.
    misses = [np.array([1000, 1001]) for _ in range(n_users)]
    m = ranking_metrics(topk, misses, ks=(5, 10))
    assert all(v == 0.0 for v in m.values()), m


def _recbole_reference(pos_index: np.ndarray, pos_len: np.ndarray) -> dict[str, np.ndarray]:
    """A loop-by-loop transcription of RecBole 1.2.1's metric_info functions ([n_users, K] each)."""
    n, k = pos_index.shape
    out: dict[str, np.ndarray] = {}
    out["hit"] = (np.cumsum(pos_index, axis=1) > 0).astype(int)
    mrr = np.zeros((n, k))
    for row, idx in enumerate(pos_index.argmax(axis=1)):
        if pos_index[row, idx] > 0:
            mrr[row, idx:] = 1 / (idx + 1)
    out["mrr"] = mrr
    out["recall"] = np.cumsum(pos_index, axis=1) / pos_len.reshape(-1, 1)
    out["precision"] = pos_index.cumsum(axis=1) / np.arange(1, k + 1)
    idcg_len = np.where(pos_len > k, k, pos_len)
    ranks = np.tile(np.arange(1, k + 1, dtype=float), (n, 1))
    idcg = np.cumsum(1.0 / np.log2(ranks + 1), axis=1)
    for row, idx in enumerate(idcg_len):
        idcg[row, idx:] = idcg[row, idx - 1]
    dcg = np.cumsum(np.where(pos_index, 1.0 / np.log2(ranks + 1), 0), axis=1)
    out["ndcg"] = dcg / idcg
    # MAP: RecBole's cumulative sum of precision at the hit ranks over min(pos_len, rank), row by row
    pre = pos_index.cumsum(axis=1) / np.arange(1, k + 1)
    sum_pre = np.cumsum(pre * pos_index.astype(np.float64), axis=1)
    actual_len = np.where(pos_len > k, k, pos_len)
    out["map"] = np.zeros((n, k))
    for row, lens in enumerate(actual_len):
        ranges = np.arange(1, k + 1)
        ranges[lens:] = ranges[lens - 1]
        out["map"][row] = sum_pre[row] / ranges
    return out


def test_matches_recbole_transcription_on_random_data() -> None:
    rng = np.random.default_rng(1)
    n_users, n_items, k = 200, 60, 20
    topk = np.stack([rng.permutation(np.arange(1, n_items + 1))[:k] for _ in range(n_users)])
    positives = [rng.choice(np.arange(1, n_items + 1), size=rng.integers(1, 30), replace=False)
                 for _ in range(n_users)]
    pos_index, pos_len = positives_matrix(topk, positives)
    ref = _recbole_reference(pos_index, pos_len)
    m = ranking_metrics(topk, positives, ks=(1, 5, 10, 20))
    for kk in (1, 5, 10, 20):
        for name in RANKING_METRICS:
            assert m[f"{name}@{kk}"] == pytest.approx(ref[name][:, kk - 1].mean(), abs=1e-12), (name, kk)
            per_user = per_user_metric(topk, positives, name, kk)
            np.testing.assert_allclose(per_user, ref[name][:, kk - 1], atol=1e-12)


def test_metric_errors() -> None:
    topk = np.array([[1, 2]])
    with pytest.raises(ValueError):
        per_user_metric(topk, [np.array([1])], "auc", 2)
    with pytest.raises(ValueError):
        ranking_metrics(topk, [np.array([1])], ks=(3,))  # K wider than the list
    with pytest.raises(ValueError):
        positives_matrix(topk, [np.array([1]), np.array([2])])  # row count mismatch


# ---------------------------------------------------------------------------------------------------
# Top-K from scores
# ---------------------------------------------------------------------------------------------------


def _brute_topk(scores: np.ndarray, k: int, exclude: list[np.ndarray] | None) -> np.ndarray:
    s = scores.astype(np.float64).copy()
    s[:, 0] = -np.inf
    if exclude is not None:
        for b, e in enumerate(exclude):
            s[b, e] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]  # full stable sort: ties by lower index
    return order


@pytest.mark.parametrize("use_torch", [True, False])
def test_topk_matches_brute_force_full_sort_with_ties_and_exclusion(
    use_torch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both the torch.topk fast path and the pure-numpy exact selection must equal a full stable sort.
    if not use_torch:
        monkeypatch.setattr(metrics_module, "torch", None)
    rng = np.random.default_rng(2)
    for _ in range(20):
        b, n = int(rng.integers(1, 30)), int(rng.integers(30, 200))
        k = int(rng.integers(1, 20))
        # Small integer scores -> lots of ties, including at the k-th position.
        scores = rng.integers(0, 5, size=(b, n)).astype(np.float32)
        exclude = [rng.choice(n, size=int(rng.integers(0, 8)), replace=False) for _ in range(b)]
        got = topk_from_scores(scores, k, exclude)
        assert got.shape == (b, k) and got.dtype == np.int64
        np.testing.assert_array_equal(got, _brute_topk(scores, k, exclude))
        # Continuous scores too, without exclusion.
        cont = rng.normal(size=(b, n))
        np.testing.assert_array_equal(topk_from_scores(cont, k), _brute_topk(cont, k, None))


def test_topk_ties_are_stable_by_lower_index() -> None:
    scores = np.array([[9.0, 1.0, 2.0, 2.0, 2.0, 0.5]])
    # Index 0 is padding; three items tie at 2.0 -> they come out 2, 3, 4, then 1, then 5.
    assert topk_from_scores(scores, 5).tolist() == [[2, 3, 4, 1, 5]]
    assert topk_from_scores(scores, 2).tolist() == [[2, 3]]
    all_equal = np.zeros((2, 8))
    assert topk_from_scores(all_equal, 4).tolist() == [[1, 2, 3, 4]] * 2


def test_topk_exclusion_and_padding_never_returned() -> None:
    rng = np.random.default_rng(3)
    b, n, k = 16, 50, 10
    scores = rng.normal(size=(b, n))
    scores[:, 0] = 1e9  # padding scores highest, must still never appear
    # Exclude each row's best 5 real items.
    best = np.argsort(-scores[:, 1:], axis=1)[:, :5] + 1
    exclude = [row for row in best]
    got = topk_from_scores(scores, k, exclude)
    for row, ex in zip(got, exclude):
        assert 0 not in row
        assert not set(row.tolist()) & set(ex.tolist())
    # Fewer rankable items than k: the tail is padded with -1, never excluded items or index 0.
    small = np.array([[5.0, 3.0, 2.0, 1.0]])
    got = topk_from_scores(small, 3, [np.array([2])])
    assert got.tolist() == [[1, 3, -1]]
    # -1 never counts as a positive.
    pos_index, _ = positives_matrix(got, [np.array([3, 2])])
    assert pos_index.tolist() == [[False, True, False]]
    # NaN is treated as -inf.
    nan_scores = np.array([[0.0, np.nan, 1.0, 0.5]])
    assert topk_from_scores(nan_scores, 3).tolist() == [[2, 3, -1]]


def test_topk_accepts_torch_tensors_and_validates() -> None:
    t = torch.tensor([[0.0, 0.1, 0.9, 0.5], [0.0, 0.7, 0.2, 0.3]])
    assert topk_from_scores(t, 2, [torch.tensor([2]), np.array([], dtype=np.int64)]).tolist() == [
        [3, 1], [1, 3]]
    assert topk_from_scores(np.array([[0, 3, 1, 2]]), 2).tolist() == [[1, 3]]  # integer scores
    # K wider than the catalogue (3 rankable items): every item ranked, the rest padded with -1
    assert topk_from_scores(np.array([[0.0, 0.1, 0.9, 0.5]]), 5).tolist() == [[2, 3, 1, -1, -1]]
    with pytest.raises(ValueError):
        topk_from_scores(np.zeros((2, 1)), 1)  # only the padding column
    with pytest.raises(ValueError):
        topk_from_scores(np.zeros((2, 4)), 1, [np.array([4]), np.array([1])])  # out of range
    with pytest.raises(ValueError):
        topk_from_scores(np.zeros(4), 1)


# ---------------------------------------------------------------------------------------------------
# Paired tests, rating metrics, mean/std, popularity
# ---------------------------------------------------------------------------------------------------


def test_paired_test_detects_clear_difference_not_null() -> None:
    rng = np.random.default_rng(4)
    base = rng.uniform(size=500)
    better = np.clip(base + 0.1 + rng.normal(scale=0.05, size=500), 0, None)
    r = paired_test(better, base)
    assert r["mean_diff"] > 0.05
    assert r["t_pvalue"] < 1e-10 and r["wilcoxon_pvalue"] < 1e-10
    assert r["n"] == 500
    # Null: two noisy copies of the same per-user quality.
    a = base + rng.normal(scale=0.1, size=500)
    b = base + rng.normal(scale=0.1, size=500)
    r = paired_test(a, b)
    assert r["t_pvalue"] > 0.05 and r["wilcoxon_pvalue"] > 0.05
    # Identical inputs: nothing to detect, p = 1 (no NaN).
    r = paired_test(base, base)
    assert r == {"mean_a": pytest.approx(base.mean()), "mean_b": pytest.approx(base.mean()),
                 "mean_diff": 0.0, "n": 500.0, "t_pvalue": 1.0, "wilcoxon_pvalue": 1.0, "ci_low": 0.0,
                 "ci_high": 0.0}
    with pytest.raises(ValueError):
        paired_test(base, base[:-1])


def test_rating_metrics() -> None:
    # errors: +1, -2, 0, +1 -> MAE = 4/4 = 1; MSE = (1 + 4 + 0 + 1)/4 = 1.5; RMSE = sqrt(1.5)
    r = rating_metrics(np.array([4.0, 1.0, 3.0, 5.0]), np.array([3.0, 3.0, 3.0, 4.0]))
    assert r["mae"] == pytest.approx(1.0)
    assert r["rmse"] == pytest.approx(math.sqrt(1.5))
    r = rating_metrics(torch.tensor([2.0, 2.0]), np.array([2.0, 2.0]))
    assert r == {"rmse": 0.0, "mae": 0.0}
    with pytest.raises(ValueError):
        rating_metrics(np.array([1.0]), np.array([1.0, 2.0]))


def test_mean_std() -> None:
    runs = [{"ndcg@10": 0.1, "recall@10": 0.2}, {"ndcg@10": 0.3, "recall@10": 0.2},
            {"ndcg@10": 0.2, "recall@10": 0.2}]
    out = mean_std(runs)
    # ndcg: mean 0.2; deviations -0.1, 0.1, 0 -> sample variance 0.02/2 = 0.01 -> std 0.1
    assert out["ndcg@10"] == (pytest.approx(0.2), pytest.approx(0.1))
    assert out["recall@10"] == (pytest.approx(0.2), pytest.approx(0.0))
    assert mean_std([{"hit@10": 0.5}]) == {"hit@10": (0.5, 0.0)}
    with pytest.raises(ValueError):
        mean_std([{"a": 1.0}, {"b": 1.0}])
    with pytest.raises(ValueError):
        mean_std([])


def test_popularity_baseline_ranks_like_a_model() -> None:
    # 5 items; counts: item1 x1, item2 x3, item3 x0, item4 x3, item5 x2
    train = np.array([2, 4, 2, 5, 4, 1, 2, 4, 5])
    pop = PopularityBaseline().fit(train, num_items=5)
    s = pop.scores(3)
    assert s.shape == (3, 6)
    assert np.isneginf(s[:, 0]).all()
    assert s[0, 1:].tolist() == [1.0, 3.0, 0.0, 3.0, 2.0]
    # Ranking: 2 and 4 tie at 3 -> 2 first; then 5, 1, 3. User 1 has seen item 2.
    top = topk_from_scores(s, 5, [np.array([], dtype=np.int64), np.array([2]), np.array([4, 5])])
    assert top.tolist() == [[2, 4, 5, 1, 3], [4, 5, 1, 3, -1], [2, 1, 3, -1, -1]]
    with pytest.raises(ValueError):
        PopularityBaseline().fit(np.array([6]), num_items=5)
    with pytest.raises(RuntimeError):
        PopularityBaseline().scores(1)


# ---------------------------------------------------------------------------------------------------
# MAP and GAUC (RecBole 1.2.1), hand-computed
# ---------------------------------------------------------------------------------------------------


def test_map_hand_computed() -> None:
    # Top-5 [5, 6, 7, 8, 9]; positives {6, 8, 42}: hits at ranks 2 and 4, pos_len 3.
    topk = np.array([[5, 6, 7, 8, 9]])
    positives = [np.array([6, 8, 42])]
    m = ranking_metrics(topk, positives, ks=(1, 2, 4, 5))
    assert m["map@1"] == 0.0
    assert m["map@2"] == pytest.approx((1 / 2) / 2)  # precision@2 at the hit, over min(3, 2)
    assert m["map@4"] == pytest.approx((1 / 2 + 2 / 4) / 3)  # over min(3, 4) = 3
    assert m["map@5"] == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_map_with_more_positives_than_k() -> None:
    # Every slot a hit but the user has 5 positives: MAP@3 divides by min(5, 3) = 3 and is 1.
    topk = np.array([[1, 2, 3]])
    m = ranking_metrics(topk, [np.array([1, 2, 3, 4, 5])], ks=(3,))
    assert m["map@3"] == pytest.approx(1.0)
    assert m["recall@3"] == pytest.approx(3 / 5)
    assert m["ndcg@3"] == pytest.approx(1.0)


def test_metrics_when_k_exceeds_the_catalogue_and_lists_are_short() -> None:
    # Three rankable items, K = 5: the list is padded with -1, which is never a positive.
    scores = np.array([[0.0, 0.2, 0.9, 0.5]])
    top = topk_from_scores(scores, 5)
    assert top.tolist() == [[2, 3, 1, -1, -1]]
    m = ranking_metrics(top, [np.array([1])], ks=(5,))
    assert m["hit@5"] == 1.0 and m["recall@5"] == 1.0
    assert m["mrr@5"] == pytest.approx(1 / 3)
    assert m["precision@5"] == pytest.approx(1 / 5)  # precision still divides by K, as RecBole's
    assert m["map@5"] == pytest.approx((1 / 3) / 1)
    # a list shorter than K because the user's seen items were excluded
    short = topk_from_scores(scores, 3, [np.array([2, 3])])
    assert short.tolist() == [[1, -1, -1]]
    assert ranking_metrics(short, [np.array([3])], ks=(3,))["hit@3"] == 0.0  # an excluded item never hits


def test_user_auc_hand_computed_with_ties_and_masks() -> None:
    inf = -np.inf
    # one positive above 2 of 3 negatives
    auc, pos_len = user_auc(np.array([[inf, 0.9, 0.8, 0.7, 0.6]]), [np.array([2])])
    assert auc.tolist() == [pytest.approx(2 / 3)] and pos_len.tolist() == [1]
    # a tie with one negative counts a half: positive 0.8 vs negatives 0.9, 0.8, 0.1 → (0 + 0.5 + 1) / 3
    auc, _ = user_auc(np.array([[inf, 0.9, 0.8, 0.8, 0.1]]), [np.array([2])])
    assert auc[0] == pytest.approx(1.5 / 3)
    # two positives: 0.9 beats both negatives, 0.3 beats one → 3 of 4 pairs; masked items are not negatives
    auc, pos_len = user_auc(np.array([[inf, 0.9, 0.5, inf, 0.3, 0.1]]), [np.array([1, 4])])
    assert auc[0] == pytest.approx(3 / 4) and pos_len[0] == 2
    # a masked (already seen, not rankable) positive is left out: 0.9 beats both negatives, weight 1
    auc, pos_len = user_auc(np.array([[inf, 0.9, inf, 0.5, 0.3]]), [np.array([1, 2])])
    assert auc[0] == pytest.approx(1.0) and pos_len[0] == 1
    auc, pos_len = user_auc(np.array([[inf, inf, 0.5, 0.3]]), [np.array([1])])  # nothing left to judge
    assert np.isnan(auc[0]) and pos_len[0] == 0
    # no negative, or no positive: undefined, and GAUC leaves the user out
    auc, pos_len = user_auc(np.array([[inf, 0.9, 0.5], [inf, 0.2, 0.1]]), [np.array([1, 2]), np.array([], int)])
    assert np.isnan(auc).all() and pos_len.tolist() == [2, 0]  # (rankable positives: GAUC's weights)
    assert math.isnan(gauc(auc, pos_len))


def test_gauc_weights_users_by_positives() -> None:
    assert gauc(np.array([1.0, 0.5, np.nan]), np.array([1, 3, 2])) == pytest.approx((1.0 * 1 + 0.5 * 3) / 4)


def test_user_auc_matches_recbole_average_rank_formula() -> None:
    """RecBole's GAUC from average ranks of the sorted scores, on tied integer scores, for few
    positives (the column-by-column path) and many (the sorted path)."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    for most in (3, 40):
        scores = rng.integers(0, 15, size=(60, 120)).astype(float)
        positives = [rng.choice(np.arange(1, 120), size=rng.integers(1, most + 1), replace=False)
                     for _ in range(60)]
        exclude = [np.setdiff1d(rng.choice(np.arange(1, 120), size=8, replace=False), p) for p in positives]
        masked = mask_scores(scores, exclude)
        auc, pos_len = user_auc(masked, positives)
        reference, weights = [], []
        for row, pos in zip(masked, positives):
            n = int(np.isfinite(row).sum())
            ranks = rankdata(-row, method="average")  # 1 = best, ties averaged
            p = pos.size
            reference.append(((n + 1) * p - p * (p + 1) / 2 - ranks[pos].sum()) / ((n - p) * p))
            weights.append(p)
        np.testing.assert_allclose(auc, reference, atol=1e-12)
        assert gauc(auc, pos_len) == pytest.approx(np.average(reference, weights=weights), abs=1e-12)


def test_paired_test_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(400)
    b = a - 0.05 + rng.normal(0, 0.1, 400)
    result = paired_test(a, b)
    assert result["ci_low"] < result["mean_diff"] < result["ci_high"]
    assert 0.03 < result["ci_low"] and result["ci_high"] < 0.07  # the true difference 0.05 inside
    assert paired_test(a, b) == result  # seeded: the same interval every time
    quarters = np.arange(10) / 4  # exact in binary: every difference is exactly -0.25
    constant = paired_test(quarters, quarters + 0.25)
    assert constant["ci_low"] == constant["ci_high"] == -0.25 and constant["t_pvalue"] == 0.0
