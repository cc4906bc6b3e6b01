"""Everything a store holds, as frames, so tests can say "unchanged" about contents, not counts."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recengine.feature_store import FeatureStore

TABLES = ("store_meta", "users", "items", "events", "searches", "item_vectors", "query_vectors", "vector_sets",
          "ingests")


def contents(store: FeatureStore | str | Path) -> dict[str, pl.DataFrame]:
    """Every table of a store (its columns and all rows, in a fixed order), from an open store or a path."""
    if not isinstance(store, FeatureStore):
        with FeatureStore(store) as opened:
            return contents(opened)
    return {table: store.sql(f"SELECT * FROM {table} ORDER BY ALL") for table in TABLES}


def assert_same_contents(before: dict[str, pl.DataFrame], after: dict[str, pl.DataFrame],
                         ignore: tuple[str, ...] = ()) -> None:
    """Every table equal, columns and rows (``ignore``: columns such as ``ingested_at`` to leave out)."""
    assert before.keys() == after.keys()
    for table, frame in before.items():
        left = frame.drop([c for c in ignore if c in frame.columns])
        right = after[table].drop([c for c in ignore if c in after[table].columns])
        assert left.columns == right.columns, f"{table}: columns {left.columns} became {right.columns}"
        assert left.equals(right), f"{table} changed:\n{left}\n->\n{right}"
