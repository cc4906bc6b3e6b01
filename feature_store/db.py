"""Small helpers over DuckDB 2.x connections, whose results hold the connection until read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import duckdb

from recengine.feature_store.errors import StoreError


def run(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """Execute a statement and read its whole result, freeing the connection."""
    return con.execute(sql, params).fetchall() if params else con.execute(sql).fetchall()


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple | None:
    """The first row of a query (None when empty); the result is read to the end."""
    rows = run(con, sql, params)
    return rows[0] if rows else None


def single_row(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple:
    """The first row of a query that always returns one (an aggregate, a key every store holds)."""
    row = one(con, sql, params)
    if row is None:
        raise StoreError(f"query returned no row: {sql}")
    return row


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, frame: Any) -> Iterator[None]:
    """``frame`` (polars or Arrow) readable by SQL as ``name`` for the block.

    After a failed statement DuckDB refuses everything but a rollback, unregistering too; so
    when the block raises, that refusal is dropped and the block's own error (a full disk, a
    bad row) is what the caller sees. A name left behind is replaced by the next register.
    """
    con.register(name, frame)
    try:
        yield
    except BaseException:
        with suppress(duckdb.Error):
            con.unregister(name)
        raise
    con.unregister(name)
