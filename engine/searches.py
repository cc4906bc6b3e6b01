"""What users searched for, as a user-tower input: the pooled vector of their recent queries.

``model.searches`` names a vector set whose text model also embedded the store's search
queries (``recengine vectors build``). For every prediction the engine pools the user's last
``searches.last`` queries made *before* the prediction's time (and within
``searches.max_age_days``) into one vector, their mean, and hands it to the user encoder as
the vector input ``vec:searches`` [B, d] (declared in the user tower's ``FeatureSpec.vectors``).
The prediction's time is the target event's in training and evaluation and the request's in
serving, so no search from after an event ever explains it (point in time, as the store's
attribute joins are).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the training loop imports this module where no DuckDB is installed
    from recengine.feature_store.vector_transforms import VectorTransform

__all__ = ["SEARCH_FEATURE", "PooledSearches", "SearchLog", "countable_searches", "pool_queries", "pool_recent"]

SEARCH_FEATURE = "searches"  # the user tower's vector input: batch key ``vec:searches``


@dataclass
class SearchLog:
    """Searches sorted by (dense user index, time): who, when (epoch seconds), which query.

    ``query_vectors[query_index[s]]`` is search ``s``'s vector; users without searches (and
    unknown users, index 0) pool to zeros.
    """

    users: np.ndarray  # [S] int64 dense user index, ascending
    times: np.ndarray  # [S] int64 epoch seconds, ascending within a user
    query_index: np.ndarray  # [S] int64 row of ``query_vectors``
    queries: list[str]  # distinct query texts, row-aligned with ``query_vectors``
    query_vectors: np.ndarray  # [Q, d] float32
    last: int = 5
    max_age_seconds: int | None = None
    # how the set's vectors were made, so serving embeds a query it has not seen the same way:
    # the registered text encoder and the set's saved transform (None: raw vectors, or unknown)
    encoder: str | None = None
    transform: VectorTransform | None = None

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        self.times = np.asarray(self.times, dtype=np.int64)
        self.query_index = np.asarray(self.query_index, dtype=np.int64)
        if self.times.size:
            self._base = int(self.times.min()) - 1
            self._span = int(self.times.max()) - self._base + 2
        else:
            self._base, self._span = 0, 2
        self._keys = self.users * self._span + (self.times - self._base)

    @property
    def dim(self) -> int:
        return int(self.query_vectors.shape[1])

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def _window(self, users: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the half-open range [start, end) of the user's searches that count at ``at``:
        strictly before it, within the age limit, at most ``last``."""
        users = np.asarray(users, dtype=np.int64)
        at = np.asarray(at, dtype=np.int64)
        offset = users * self._span
        end = np.searchsorted(self._keys, offset + np.clip(at - self._base, 0, self._span - 1), side="left")
        start = np.searchsorted(self._keys, offset, side="left")
        if self.max_age_seconds is not None:
            oldest = np.clip(at - self.max_age_seconds - self._base, 0, self._span - 1)
            start = np.maximum(start, np.searchsorted(self._keys, offset + oldest, side="left"))
        start = np.maximum(start, end - self.last)
        return start, np.maximum(end, start)

    def pool(self, users: np.ndarray, at: np.ndarray) -> np.ndarray:
        """[B, d] float32: the mean vector of each (user, time)'s counted searches (zeros: none)."""
        start, end = self._window(users, at)
        out = np.zeros((start.shape[0], self.dim), dtype=np.float32)
        if not len(self):
            return out
        steps = np.arange(self.last, dtype=np.int64)
        index = end[:, None] - 1 - steps[None, :]
        counted = index >= start[:, None]
        vectors = self.query_vectors[self.query_index[np.clip(index, 0, None)]]  # [B, last, d]
        total = (vectors * counted[..., None]).sum(axis=1)
        counts = counted.sum(axis=1, keepdims=True)
        np.divide(total, np.maximum(counts, 1), out=out)
        return out

    def recent(self, user: int, at: int) -> list[tuple[str, int]]:
        """The (query, epoch seconds) pairs one prediction pools, newest first."""
        start, end = self._window(np.array([user]), np.array([at]))
        rows = range(int(end[0]) - 1, int(start[0]) - 1, -1)
        return [(self.queries[int(self.query_index[row])], int(self.times[row])) for row in rows]

    def of_user(self, user: int) -> tuple[list[str], np.ndarray]:
        """Every search of one user: (queries, epoch seconds), oldest first."""
        start, end = np.searchsorted(self.users, [user, user + 1])
        rows = self.query_index[start:end].tolist()
        return [self.queries[row] for row in rows], self.times[start:end]

    def vector_lookup(self) -> dict[str, np.ndarray]:
        """Query text → vector, for serving from this log (no snapshot)."""
        return dict(zip(self.queries, self.query_vectors))


@dataclass(frozen=True)
class PooledSearches:
    """One request's pooled recent-search vector and the searches behind it (newest first)."""

    vector: np.ndarray  # [d] float32 (zeros when no search counted)
    queries: list[str]
    vectors: np.ndarray  # [len(queries), d]: each counted query's vector, for reasons


def countable_searches(queries: list[str], times: np.ndarray, at: int, last: int,
                       max_age_seconds: int | None) -> list[str]:
    """The searches a request at ``at`` (epoch seconds) pools, oldest first: the ``last`` made
    by ``at`` (a search in the request's own second counts, it was typed before the request was
    answered) and within the age limit, as :meth:`SearchLog.pool` counts them for training.
    ``queries`` and ``times`` are one user's searches, oldest first."""
    moments = np.asarray(times, dtype=np.int64)
    counted = moments <= at
    if max_age_seconds is not None:
        counted &= moments >= at - max_age_seconds
    return [query for query, keep in zip(queries, counted.tolist()) if keep][-last:] if last else []


def pool_queries(window: list[str], vectors: dict[str, np.ndarray], dim: int) -> PooledSearches:
    """The mean vector of the ``window``'s queries (oldest first) that have one (a query without
    is skipped), with the queries newest first."""
    counted = [query for query in reversed(window) if query in vectors]
    if not counted:
        return PooledSearches(np.zeros(dim, dtype=np.float32), [], np.zeros((0, dim), dtype=np.float32))
    matrix = np.stack([vectors[q] for q in counted]).astype(np.float32)
    return PooledSearches(matrix.mean(axis=0), counted, matrix)


def pool_recent(queries: list[str], times: np.ndarray, vectors: dict[str, np.ndarray], at: int, dim: int,
                last: int, max_age_seconds: int | None) -> PooledSearches:
    """What a request pools, the way :meth:`SearchLog.pool` does for training: the countable
    searches (:func:`countable_searches`) averaged over those with a vector."""
    return pool_queries(countable_searches(queries, times, at, last, max_age_seconds), vectors, dim)
