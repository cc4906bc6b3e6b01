"""Saved vector-set transforms (PCA, whitening): what a set's stored vectors went through.

A transform maps a raw vector ``x`` (``input_dim``) to ``(x - mean) @ projection`` (``dim``).
It is fitted once on the catalogue (``recengine.vector_transform``) and kept in the DuckDB
file beside the set, as float32 little-endian bytes with their shape, so every vector added
to the set later (incremental builds, ingests, items posted while serving) goes through the
very same numbers as the catalogue did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np

from recengine.feature_store.db import one, run

KINDS = ("pca", "whiten")
TABLE_DDL = ("CREATE TABLE IF NOT EXISTS vector_transforms (name VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, "
             "input_dim INTEGER NOT NULL, dim INTEGER NOT NULL, fitted_items BIGINT NOT NULL, "
             "fitted_at TIMESTAMP NOT NULL, mean BLOB NOT NULL, projection BLOB NOT NULL)")


@dataclass(frozen=True)
class VectorTransform:
    """``(x - mean) @ projection``, with what it was fitted on (for the set's metadata)."""

    kind: str  # "pca" or "whiten"
    mean: np.ndarray  # [input_dim] float32
    projection: np.ndarray  # [input_dim, dim] float32
    fitted_items: int
    fitted_at: datetime  # naive UTC

    @property
    def input_dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])

    def apply(self, matrix: Any) -> np.ndarray:
        """[n, dim] float32 of raw [n, input_dim] vectors (computed in float64)."""
        vectors = np.asarray(matrix, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[1] != self.input_dim:
            raise ValueError(f"vectors of shape {vectors.shape} for a {self.kind} transform "
                             f"of {self.input_dim}-d vectors")
        centred = vectors - self.mean.astype(np.float64)
        return (centred @ self.projection.astype(np.float64)).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """The set's transform metadata (no arrays), for stats and messages."""
        return {"kind": self.kind, "input_dim": self.input_dim, "dim": self.dim,
                "fitted_items": self.fitted_items, "fitted_at": self.fitted_at.isoformat()}


def _has_table(con: duckdb.DuckDBPyConnection) -> bool:
    return one(con, "SELECT 1 FROM information_schema.tables WHERE table_name = 'vector_transforms'") is not None


def save(con: duckdb.DuckDBPyConnection, name: str, transform: VectorTransform) -> None:
    """Record (or replace) set ``name``'s transform, inside the caller's transaction."""
    run(con, TABLE_DDL)
    mean = np.ascontiguousarray(transform.mean, dtype="<f4")
    projection = np.ascontiguousarray(transform.projection, dtype="<f4")
    run(con, "INSERT OR REPLACE INTO vector_transforms VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [name, transform.kind, transform.input_dim, transform.dim, transform.fitted_items,
         transform.fitted_at, mean.tobytes(), projection.tobytes()])


def delete(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Forget set ``name``'s transform (its vectors are raw again), inside the caller's transaction."""
    if _has_table(con):
        run(con, "DELETE FROM vector_transforms WHERE name = ?", [name])


def load_all(con: duckdb.DuckDBPyConnection) -> dict[str, VectorTransform]:
    """Set name → its saved transform (empty for a store that never saved one)."""
    if not _has_table(con):
        return {}
    rows = con.execute("SELECT name, kind, input_dim, dim, fitted_items, fitted_at, mean, projection "
                       "FROM vector_transforms ORDER BY name").fetchall()
    found = {}
    for name, kind, input_dim, dim, fitted_items, fitted_at, mean, projection in rows:
        found[name] = VectorTransform(
            kind=kind, mean=np.frombuffer(mean, dtype="<f4").reshape(input_dim).copy(),
            projection=np.frombuffer(projection, dtype="<f4").reshape(input_dim, dim).copy(),
            fitted_items=int(fitted_items), fitted_at=fitted_at)
    return found
