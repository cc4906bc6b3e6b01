"""Search events: what users typed, kept apart from the user × item events.

A search names no item, so it does not fit the ``events`` table every training set, split
and history reads (each would have to skip item-less rows). Search rows of an events source
(``event_type`` ``search``, a ``query``, no ``item_id``) are routed here by the writer, in the
same transaction as the source's other rows. Re-ingesting the same file adds nothing: a search
is identified by (user, query, time).

The functions take a DuckDB connection inside the caller's transaction, never the store.
"""

from __future__ import annotations

import duckdb
import polars as pl

from recengine.feature_store.db import registered, run, single_row
from recengine.feature_store.schema import QUERY, USER_ID

TABLE = "searches"
DDL = f"CREATE TABLE IF NOT EXISTS {TABLE} (user_id VARCHAR NOT NULL, query VARCHAR NOT NULL, " \
      "ts TIMESTAMP NOT NULL, seq BIGINT NOT NULL)"
COLUMNS = (USER_ID, QUERY, "ts")
# each distinct query's vector in a vector set: embedded by the model (and transform) that
# embedded the set's items, so a query and an item compare in one space
VECTOR_TABLE = "query_vectors"
VECTOR_DDL = f"CREATE TABLE IF NOT EXISTS {VECTOR_TABLE} (name VARCHAR NOT NULL, query VARCHAR NOT NULL, " \
             "vector FLOAT[] NOT NULL)"


def split_searches(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(item events without the ``query`` column, search rows as ``COLUMNS``) of a conformed
    events frame; a frame without ``query`` is all item events."""
    if QUERY not in events.columns:
        return events, pl.DataFrame(schema={USER_ID: pl.String, QUERY: pl.String, "ts": pl.Datetime("us")})
    is_search = pl.col(QUERY).is_not_null()
    return events.filter(~is_search).drop(QUERY), events.filter(is_search).select(COLUMNS)


def has_searches(events: pl.DataFrame) -> bool:
    """Whether a conformed events frame holds search rows."""
    return QUERY in events.columns and events[QUERY].is_not_null().any()


def insert_searches(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> int:
    """Append the searches not already stored (same user, query and time), in ``rows``' order;
    returns how many were added."""
    if rows.height == 0:
        return 0
    start = single_row(con, f"SELECT coalesce(max(seq), 0) + 1 FROM {TABLE}")[0]
    before = single_row(con, f"SELECT count(*) FROM {TABLE}")[0]
    with registered(con, "staged_searches", rows.unique(COLUMNS, keep="first", maintain_order=True)
                    .with_row_index("_row")):
        run(con, f"""
            INSERT INTO {TABLE}
            SELECT s.user_id, s.query, s.ts, {int(start)} + s._row FROM staged_searches s
            ANTI JOIN {TABLE} t ON t.user_id = s.user_id AND t.query = s.query AND t.ts = s.ts
            ORDER BY s._row""")
    return int(single_row(con, f"SELECT count(*) FROM {TABLE}")[0] - before)


def read_searches(con: duckdb.DuckDBPyConnection, users: list[str] | None = None) -> pl.DataFrame:
    """Every search (``user_id, query, ts``) in (user, time, ingest) order, or only ``users``'."""
    where = "" if users is None else "WHERE user_id IN (SELECT unnest(?::VARCHAR[]))"
    params = None if users is None else [users]
    return con.sql(f"SELECT user_id, query, ts FROM {TABLE} {where} ORDER BY user_id, ts, seq", params=params).pl()


def recent_searches_sql(last: int) -> str:
    """Each user's ``last`` searches (for a serving snapshot), oldest first."""
    return f"""
        SELECT user_id, list(query ORDER BY ts, seq) AS queries, list(ts ORDER BY ts, seq) AS ts
        FROM (SELECT * FROM {TABLE} QUALIFY row_number() OVER
              (PARTITION BY user_id ORDER BY ts DESC, seq DESC) <= {int(last)})
        GROUP BY user_id ORDER BY user_id"""


def unembedded_queries(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    """Distinct searched queries that have no vector in set ``name`` yet, sorted."""
    return con.sql(f"SELECT DISTINCT s.query FROM {TABLE} s WHERE NOT EXISTS "
                   f"(SELECT 1 FROM {VECTOR_TABLE} v WHERE v.name = ? AND v.query = s.query) ORDER BY s.query",
                   params=[name]).pl()[QUERY].to_list()


def insert_query_vectors(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    """Replace the vectors of ``frame``'s queries (columns ``query, vector``) in set ``name``."""
    with registered(con, "staged_query_vectors", frame):
        run(con, f"DELETE FROM {VECTOR_TABLE} v USING staged_query_vectors s WHERE v.name = ? AND v.query = s.query",
            [name])
        run(con, f"INSERT INTO {VECTOR_TABLE} SELECT ?, query, vector FROM staged_query_vectors", [name])


def delete_query_vectors(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop set ``name``'s query vectors (its items were re-embedded: the old ones no longer compare)."""
    run(con, f"DELETE FROM {VECTOR_TABLE} WHERE name = ?", [name])
