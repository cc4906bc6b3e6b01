"""User vectors encoded once per (model, snapshot), for serving.

A user's vector depends only on the model and the user's features and history, and a
replica's snapshot is immutable until the next swap: encoding every user at load (in
batches) turns the per-request encoder pass (a transformer over 50 items: ~1 ms on one
core) into a row lookup. Only valid when the interactor scores from ``user.vector`` alone
(``Interactor.uses_sequence = False``); the Recommender checks that before building one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

BATCH = 1024

Encode = Callable[[list[int], list[np.ndarray]], np.ndarray]  # (indices, histories) → [B, d]
Lookup = Callable[[str], tuple[int, np.ndarray]]  # user id → (dense index, history indices)


class UserVectors:
    """Row lookup of precomputed user vectors: ``get(user_id)`` → [d] or None."""

    def __init__(self, rows: dict[str, int], matrix: np.ndarray) -> None:
        self.rows = rows
        self.matrix = matrix

    @classmethod
    def build(cls, user_ids: Iterable[str], lookup: Lookup, encode: Encode, batch: int = BATCH,
              limit: int | None = None) -> UserVectors:
        """Encode every user that has an id in the model or a history (others are unknown),
        the first ``limit`` of them when given."""
        rows: dict[str, int] = {}
        parts: list[np.ndarray] = []
        pending: tuple[list[str], list[int], list[np.ndarray]] = ([], [], [])

        def flush() -> None:
            ids, indices, histories = pending
            if ids:
                parts.append(encode(indices, histories))
                rows.update((user, len(rows)) for user in ids)
                for part in pending:
                    part.clear()

        for user_id in dict.fromkeys(user_ids):  # de-duplicated, order kept
            if limit is not None and len(rows) + len(pending[0]) >= limit:
                break
            index, history = lookup(user_id)
            if index == 0 and history.size == 0:
                continue
            pending[0].append(user_id)
            pending[1].append(index)
            pending[2].append(history)
            if len(pending[0]) >= batch:
                flush()
        flush()
        matrix = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
        return cls(rows, np.ascontiguousarray(matrix, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, user_id: str) -> np.ndarray | None:
        row = self.rows.get(user_id)
        return None if row is None else self.matrix[row]

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to ``n`` vectors drawn without replacement (calibration queries)."""
        if len(self) <= n:
            return self.matrix
        return self.matrix[np.random.default_rng(seed).choice(len(self), size=n, replace=False)]
