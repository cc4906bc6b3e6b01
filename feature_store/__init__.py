"""recengine's feature store: users, items, events and item vectors in DuckDB.

Public API: :class:`FeatureStore` (the live DuckDB file, one writer), :class:`OnlineStore`
(lookups from a published in-memory snapshot) and :class:`StoreSchema`.

The classes load on first use: the error types and the split-protocol vocabulary
(``recengine.feature_store.protocols``) import without DuckDB or polars, so the training
core (``recengine.config``) can name them on a machine that has neither.
"""

from importlib import import_module
from typing import Any

from recengine.feature_store.errors import (
    IngestError,
    SchemaError,
    SnapshotError,
    StoreError,
    StoreLockedError,
    UnknownEntitiesError,
)

_LAZY = {
    "OnlineStore": "recengine.feature_store.online",
    "UserFeatures": "recengine.feature_store.online",
    "ColumnType": "recengine.feature_store.schema",
    "StoreSchema": "recengine.feature_store.schema",
    "FeatureStore": "recengine.feature_store.store",
    "IngestResult": "recengine.feature_store.store",
    "default_store_path": "recengine.feature_store.store",
}

__all__ = ["IngestError", "SchemaError", "SnapshotError", "StoreError", "StoreLockedError", "UnknownEntitiesError",
           *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'recengine.feature_store' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
