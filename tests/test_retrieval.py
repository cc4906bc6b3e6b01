"""Candidate retrieval (exact scan and calibrated IVF) and the per-snapshot user-vector cache."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.errors import ConfigError, DataError
from recengine.retrieval import IVF_MIN_ITEMS, ExactIndex, IVFIndex, build_index
from recengine.user_vectors import UserVectors


def clustered(items: int, dim: int = 16, clusters: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An item matrix (row 0 = padding) and queries drawn around the same cluster centres,
    the shape real embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32) * 3
    matrix = np.zeros((items + 1, dim), dtype=np.float32)
    matrix[1:] = centres[rng.integers(clusters, size=items)] + rng.normal(size=(items, dim)).astype(np.float32)
    queries = centres[rng.integers(clusters, size=300)] + rng.normal(size=(300, dim)).astype(np.float32)
    return matrix, queries.astype(np.float32)


def exact_top(matrix: np.ndarray, queries: np.ndarray, n: int) -> np.ndarray:
    scores = queries @ matrix[1:].T
    return np.argsort(-scores, axis=1, kind="stable")[:, :n] + 1


def test_exact_index_returns_the_true_top_n_and_never_the_padding_row() -> None:
    matrix, queries = clustered(2_000)
    matrix[0] = 100.0  # a padding row that would win every product
    found = ExactIndex(matrix).search(queries[:20], 50)
    truth = exact_top(matrix, queries[:20], 50)
    assert found.shape == (20, 50) and (found >= 1).all()
    assert all(set(a) == set(b) for a, b in zip(found.tolist(), truth.tolist()))
    everything = ExactIndex(matrix).search(queries[:2], 5_000)  # more than the catalogue: all items
    assert sorted(everything[0].tolist()) == list(range(1, 2_001))


def test_ivf_is_calibrated_to_the_recall_target_on_held_out_queries() -> None:
    matrix, queries = clustered(20_000)
    index = IVFIndex.build(matrix, queries[:200], n=100, target_recall=0.95)
    assert 1 <= index.nprobe < index.nlist  # cheaper than scanning every list
    assert index.recall >= 0.95
    found = index.search(queries[200:], 100)
    truth = exact_top(matrix, queries[200:], 100)
    held_out = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(found.tolist(), truth.tolist())])
    assert held_out >= 0.9  # calibration generalises to queries it did not see
    assert (found >= 1).all() and found.shape == (100, 100)
    described = index.describe()
    assert described["kind"] == "ivf" and described["nprobe"] == index.nprobe


def test_ivf_falls_back_to_exact_rows_when_probed_lists_are_short() -> None:
    matrix, queries = clustered(3_000)
    index = IVFIndex.build(matrix, queries[:50], n=200, target_recall=0.5)
    index.index.nprobe = 1  # one list of ~27 items cannot hold 200 candidates
    found = index.search(queries[:5], 200)
    assert (found >= 1).all()
    assert all(set(a) == set(b) for a, b in zip(found.tolist(), exact_top(matrix, queries[:5], 200).tolist()))


def test_build_index_auto_choice_and_errors() -> None:
    small, queries = clustered(1_000)
    assert build_index("auto", small, queries, 100, 0.95).kind == "exact"
    assert build_index("ivf", small, queries, 100, 0.95).kind == "ivf"
    assert build_index("ivf", small, queries, 5_000, 0.95).kind == "exact"  # every item is a candidate
    with pytest.raises(ConfigError, match="unknown retrieval 'hnsw'; expected one of: auto, exact, ivf"):
        build_index("hnsw", small, queries, 100, 0.95)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="query vectors to calibrate"):
        build_index("ivf", small, None, 100, 0.95)
    large = np.zeros((IVF_MIN_ITEMS + 1, 4), dtype=np.float32)
    assert build_index("auto", large, None, 100, 0.95).kind == "exact"  # nothing to calibrate on


def test_auto_keeps_the_exact_scan_when_vectors_have_no_clusters() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(IVF_MIN_ITEMS + 1, 32)).astype(np.float32)  # no structure to exploit
    queries = rng.normal(size=(64, 32)).astype(np.float32)
    assert build_index("auto", noise, queries, 200, 0.95).kind == "exact"
    structured, around = clustered(IVF_MIN_ITEMS, dim=32, clusters=200)
    assert build_index("auto", structured, around[:100], 200, 0.95).kind == "ivf"


def test_user_vectors_encode_known_users_once_in_batches() -> None:
    histories = {"a": (1, np.array([3, 4])), "b": (0, np.array([5])), "nobody": (0, np.zeros(0, dtype=np.int64)),
                 "c": (2, np.zeros(0, dtype=np.int64))}
    calls: list[int] = []

    def encode(indices: list[int], rows: list[np.ndarray]) -> np.ndarray:
        calls.append(len(indices))
        return np.array([[i, r.size] for i, r in zip(indices, rows)], dtype=np.float32)

    cache = UserVectors.build(["a", "b", "nobody", "c", "a"], histories.__getitem__, encode, batch=2)
    assert calls == [2, 1] and len(cache) == 3  # "nobody" has neither id nor history; "a" once
    assert cache.get("a").tolist() == [1, 2] and cache.get("b").tolist() == [0, 1] and cache.get("c").tolist() == [2, 0]
    assert cache.get("nobody") is None
    assert cache.sample(10).shape == (3, 2) and cache.sample(2).shape == (2, 2)
    first_two = UserVectors.build(["a", "nobody", "b", "c"], histories.__getitem__, encode, limit=2)
    assert list(first_two.rows) == ["a", "b"]  # the limit counts encoded users
