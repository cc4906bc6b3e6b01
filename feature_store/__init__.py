"""recengine's feature store: users, items, events and item vectors in DuckDB.

Public API: :class:`FeatureStore` (the live DuckDB file, one writer), :class:`OnlineStore`
(lookups from a published in-memory snapshot) and :class:`StoreSchema`.
"""

from recengine.feature_store.errors import (
    IngestError,
    SchemaError,
    StoreError,
    StoreLockedError,
    UnknownEntitiesError,
)
from recengine.feature_store.online import OnlineStore, UserFeatures
from recengine.feature_store.schema import ColumnType, StoreSchema
from recengine.feature_store.store import FeatureStore, IngestResult, default_store_path

__all__ = [
    "ColumnType",
    "FeatureStore",
    "IngestError",
    "IngestResult",
    "OnlineStore",
    "SchemaError",
    "StoreError",
    "StoreLockedError",
    "StoreSchema",
    "UnknownEntitiesError",
    "UserFeatures",
    "default_store_path",
]
