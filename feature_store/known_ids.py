"""The user and item ids a store holds, kept in memory by the store's writer, so that a live
batch's check for ids the store lacks is a set lookup, not a scan of the ``users`` and
``items`` tables (at 100k items that scan was ~5 ms of CPU a batch, the largest part of a
small group commit).

Ids never leave those tables (an update replaces rows of the same id), so a set only grows.
It holds committed ids only: read outside any transaction (:meth:`KnownIds.load`), then
added to from the batches a commit made durable (:meth:`KnownIds.learn`). So a set may miss
an id (the SQL check then runs, as without it) but never names one the store lacks: an
unknown item is still refused and an unknown user still created. A table of more than
``max_ids`` rows is not held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import polars as pl

from recengine.feature_store.db import single_row
from recengine.feature_store.live_log import LiveChange
from recengine.feature_store.schema import ITEM_ID, USER_ID

ID_COLUMNS = {"users": USER_ID, "items": ITEM_ID}
MAX_IDS = 1_000_000  # per table: ~80 MB of Python strings at most


class KnownIds:
    """Per table (``users``, ``items``): the ids known to be stored, or None (too many)."""

    def __init__(self, max_ids: int = MAX_IDS) -> None:
        self.max_ids = max_ids
        self._ids: dict[str, set[str] | None] = {}

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Read the tables not read yet; call outside a transaction (committed ids only)."""
        for kind, column in ID_COLUMNS.items():
            if kind in self._ids:
                continue
            rows = int(single_row(con, f"SELECT count(*) FROM {kind}")[0])
            self._ids[kind] = None if rows > self.max_ids else {
                row[0] for row in con.execute(f"SELECT DISTINCT {column} FROM {kind}").fetchall()}

    def hold(self, kind: str, ids: pl.Series) -> bool:
        """Whether every one of ``ids`` is known to be stored (False: ask the store)."""
        known = self._ids.get(kind)
        return known is not None and known.issuperset(ids.unique().to_list())

    def learn(self, changes: Iterable[LiveChange]) -> None:
        """Add the ids that committed batches wrote: events name stored (or created) users
        and items, user and item batches their own ids."""
        for change in changes:
            for kind, column in ID_COLUMNS.items():
                known = self._ids.get(kind)
                if known is None or column not in change.frame.columns:
                    continue
                known.update(change.frame.get_column(column).drop_nulls().to_list())
                if len(known) > self.max_ids:
                    self._ids[kind] = None
