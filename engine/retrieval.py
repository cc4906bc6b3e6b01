"""Candidate retrieval: each query's top-N items by inner product with the item matrix.

Two indexes answer the same question:

- :class:`ExactIndex` scans the whole catalogue (one matrix product and a partial sort).
  Exact, and cheap below ~50k items; at 100k × 64 it reads 25.6 MB a request, which makes
  it memory-bound and slows badly when other processes share the cores.
- :class:`IVFIndex` (faiss ``IndexIVFFlat``, inner product) clusters the items once and
  scans only the clusters closest to the query. How many clusters to scan (``nprobe``) is
  not guessed: :meth:`IVFIndex.build` calibrates it on real query vectors (users of the
  bundle) as the smallest power of two whose recall@N against the exact scan reaches the
  target, and reports the recall it measured. Vectors without cluster structure (an
  untrained model) would need most lists probed; ``auto`` then keeps the exact scan.

Row 0 of the item matrix is the padding item and is never returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, get_args

import numpy as np

from recengine.errors import ConfigError, DataError

if TYPE_CHECKING:  # faiss loads only when an IVF index is built
    import faiss

RetrievalKind = Literal["auto", "exact", "ivf"]
RETRIEVAL_KINDS: tuple[str, ...] = get_args(RetrievalKind)
IVF_MIN_ITEMS = 50_000  # "auto" picks IVF from this catalogue size on
# "auto" keeps the exact scan when IVF needs more than this share of its lists to reach the
# recall target (unclustered vectors): scanning them would cost as much as the scan itself
IVF_MAX_PROBED_SHARE = 0.25
CALIBRATION_QUERIES = 256
TRAINING_POINTS_PER_LIST = 64  # k-means sample: enough for stable centroids, bounded build time


class RetrievalIndex(Protocol):
    kind: str

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """[B, d] float32 queries → [B, n] dense item indices (≥ 1), in no particular order."""

    def describe(self) -> dict[str, float | int | str]:
        """What the index is, for logs and ``/model``."""


class ExactIndex:
    """Every item scored; the n best kept with ``argpartition`` (no full sort)."""

    kind = "exact"

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix  # [N+1, d] float32, row 0 = padding

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        scores = queries @ self.matrix.T  # [B, N+1]
        scores[:, 0] = -np.inf
        items = scores.shape[1] - 1
        if n >= items:
            return np.tile(np.arange(1, items + 1), (queries.shape[0], 1))
        return np.argpartition(scores, -n, axis=1)[:, -n:]

    def describe(self) -> dict[str, float | int | str]:
        return {"kind": self.kind, "items": self.matrix.shape[0] - 1}


@dataclass
class IVFIndex:
    """faiss inverted-file index over the item matrix, with a calibrated ``nprobe``."""

    index: faiss.IndexIVFFlat
    exact: ExactIndex
    nlist: int
    nprobe: int
    recall: float  # measured recall@n on the calibration queries
    n: int  # the candidate count it was calibrated for
    kind: str = "ivf"

    @classmethod
    def build(cls, matrix: np.ndarray, queries: np.ndarray, n: int, target_recall: float,
              seed: int = 0, max_probed_share: float = 1.0) -> IVFIndex:
        """Cluster ``matrix[1:]`` into ~2·√N lists and calibrate ``nprobe`` on ``queries``
        (trying at most ``max_probed_share`` of the lists; ``recall`` says what it reached)."""
        import faiss

        items = matrix.shape[0] - 1
        dim = matrix.shape[1]
        # ~2·√N lists, each with enough items (39, faiss's minimum) to train its centroid
        nlist = max(1, min(65_536, int(2 * math.sqrt(items)), items // 39))
        rng = np.random.default_rng(seed)
        sample = matrix[1 + rng.choice(items, size=min(items, TRAINING_POINTS_PER_LIST * nlist), replace=False)]
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(np.ascontiguousarray(sample))
        index.add_with_ids(np.ascontiguousarray(matrix[1:]), np.arange(1, items + 1, dtype=np.int64))
        exact = ExactIndex(matrix)
        built = cls(index, exact, nlist, nlist, 1.0, n)
        built.calibrate(queries, target_recall, max(1, int(max_probed_share * nlist)))
        return built

    def calibrate(self, queries: np.ndarray, target_recall: float, max_nprobe: int | None = None) -> None:
        """The smallest power-of-two ``nprobe`` reaching ``target_recall``, trying up to
        ``max_nprobe`` (default: every list, which is exact)."""
        queries = np.ascontiguousarray(queries[:CALIBRATION_QUERIES], dtype=np.float32)
        if queries.shape[0] == 0:
            return  # nothing to calibrate on: keep scanning every list (exact)
        limit = min(self.nlist, max_nprobe or self.nlist)
        truth = self.exact.search(queries, self.n)
        nprobe = 1
        while True:
            self.index.nprobe = nprobe
            found = self._search(queries, self.n)
            recall = float(np.mean([np.intersect1d(a, b).size / b.size for a, b in zip(found, truth)]))
            if recall >= target_recall or nprobe >= limit:
                self.nprobe, self.recall = nprobe, recall
                return
            nprobe = min(limit, nprobe * 2)

    def _search(self, queries: np.ndarray, n: int) -> np.ndarray:
        _, found = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), n)
        return found

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        found = self._search(queries, n)
        short = (found < 0).any(axis=1)  # the probed lists held fewer than n items
        if short.any():
            found[short] = self.exact.search(queries[short], n)
        return found

    def describe(self) -> dict[str, float | int | str]:
        return {"kind": self.kind, "items": self.exact.matrix.shape[0] - 1, "nlist": self.nlist,
                "nprobe": self.nprobe, "calibrated_recall": round(self.recall, 4), "candidates": self.n}


@dataclass
class GrownIndex:
    """An index built at load, plus the items appended after it (posted while serving),
    scanned exactly and merged: they are found from their first request, and the built
    index is not rebuilt (IVF clustering takes seconds at 100k items)."""

    base: RetrievalIndex
    matrix: np.ndarray  # [N+1, d] every item, the appended ones included
    first_new: int  # dense index of the first appended item
    kind: str = ""

    def __post_init__(self) -> None:
        self.kind = self.base.kind

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        found = self.base.search(queries, n)
        new = np.arange(self.first_new, self.matrix.shape[0], dtype=np.int64)
        union = np.concatenate([found, np.broadcast_to(new, (queries.shape[0], new.size))], axis=1)
        scores = np.einsum("bd,bnd->bn", queries, self.matrix[union])
        best = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        return np.take_along_axis(union, best, axis=1)

    def describe(self) -> dict[str, float | int | str]:
        return {**self.base.describe(), "items": self.matrix.shape[0] - 1,
                "appended_items": self.matrix.shape[0] - self.first_new}


def grow_index(index: RetrievalIndex, matrix: np.ndarray) -> RetrievalIndex:
    """``index`` over ``matrix``, which extends the one it was built on by appended items."""
    if isinstance(index, ExactIndex):
        return ExactIndex(matrix)
    base, first_new = (index.base, index.first_new) if isinstance(index, GrownIndex) \
        else (index, _indexed_items(index) + 1)
    return GrownIndex(base, matrix, first_new)


def _indexed_items(index: RetrievalIndex) -> int:
    return index.exact.matrix.shape[0] - 1 if isinstance(index, IVFIndex) else 0


def build_index(kind: str, matrix: np.ndarray, queries: np.ndarray | None, n: int,
                target_recall: float) -> RetrievalIndex:
    """The index ``kind`` (a :data:`RetrievalKind`, checked) names; ``auto`` is IVF from
    :data:`IVF_MIN_ITEMS` items on, unless reaching the recall target would probe over a
    quarter of the lists (then exact).

    ``queries`` are representative user vectors for calibrating IVF (None: no IVF, exact).
    """
    if kind not in RETRIEVAL_KINDS:
        raise ConfigError(f"unknown retrieval {kind!r}; expected one of: {', '.join(RETRIEVAL_KINDS)}")
    items = matrix.shape[0] - 1
    if n >= items:
        return ExactIndex(matrix)  # every item is a candidate anyway
    auto = kind == "auto"
    if auto:
        kind = "ivf" if items >= IVF_MIN_ITEMS and queries is not None and len(queries) else "exact"
    if kind == "exact":
        return ExactIndex(matrix)
    if queries is None or not len(queries):
        raise DataError("IVF retrieval needs query vectors to calibrate on (no known users)")
    if not auto:
        return IVFIndex.build(matrix, queries, n, target_recall)
    index = IVFIndex.build(matrix, queries, n, target_recall, max_probed_share=IVF_MAX_PROBED_SHARE)
    return index if index.recall >= target_recall else index.exact
