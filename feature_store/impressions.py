"""What was shown, and which experiments ran: the tables online metrics are computed from.

Every answered ``/recommend`` logs one row per item shown (``impressions``: the request's
id, the user, the item, its position, the model and, under an experiment, the arm that
contributed it). Events may name the ``request_id`` that showed their item; the rest are
attributed to the latest impression of that item for that user within a window
(:mod:`recengine.online.attribution`). ``experiments`` records each experiment as started
and how it ended, so its figures can be recomputed from the store alone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl

from recengine.feature_store.db import one, registered, run
from recengine.feature_store.errors import IngestError

IMPRESSION_COLUMNS: dict[str, pl.DataType] = {
    "request_id": pl.String(), "ts": pl.Datetime("us"), "user_id": pl.String(), "item_id": pl.String(),
    "position": pl.Int32(), "model": pl.String(), "experiment": pl.String(), "arm": pl.String(),
}
REQUIRED = ("request_id", "ts", "item_id", "position", "model")

DDL = (
    "CREATE TABLE IF NOT EXISTS impressions (request_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, "
    "user_id VARCHAR, item_id VARCHAR NOT NULL, position INTEGER NOT NULL, model VARCHAR NOT NULL, "
    "experiment VARCHAR, arm VARCHAR)",
    "CREATE TABLE IF NOT EXISTS experiments (id VARCHAR PRIMARY KEY, domain VARCHAR NOT NULL, spec VARCHAR NOT NULL, "
    "started_at TIMESTAMP NOT NULL, stopped_at TIMESTAMP, winner VARCHAR)",
    # stores created before events could name the request that showed their item
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS request_id VARCHAR",
)


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        run(con, statement)


def impressions_frame(rows: pl.DataFrame | list[dict[str, Any]]) -> pl.DataFrame:
    """Impression rows in the table's column order and types; a row lacking a required
    value is refused (these come from replicas, so a refusal is a bug, never user input)."""
    frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows, schema=IMPRESSION_COLUMNS)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise IngestError("impressions", f"missing column(s) {missing}", column=missing[0])
    frame = frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c)
                          for c, t in IMPRESSION_COLUMNS.items()])
    for column in REQUIRED:
        nulls = frame[column].is_null()
        if nulls.any():
            raise IngestError("impressions", "required value is empty", row=int(nulls.arg_max() or 0),
                              row_label="impression", column=column)
    return frame


def append(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> int:
    """Insert impression rows inside the caller's transaction."""
    with registered(con, "new_impressions", frame):
        run(con, "INSERT INTO impressions SELECT * FROM new_impressions")
    return frame.height


def record_experiment(con: duckdb.DuckDBPyConnection, spec: dict[str, Any]) -> None:
    run(con, "INSERT INTO experiments VALUES (?, ?, ?, ?, NULL, NULL)",
        [spec["id"], spec["domain"], json.dumps(spec), _naive(spec["started_at"])])


def stop_experiment(con: duckdb.DuckDBPyConnection, experiment_id: str, winner: str | None,
                    when: datetime | None = None) -> None:
    when = when or datetime.now(UTC)
    run(con, "UPDATE experiments SET stopped_at = ?, winner = ? WHERE id = ?",
        [when.astimezone(UTC).replace(tzinfo=None), winner, experiment_id])


def experiment(con: duckdb.DuckDBPyConnection, domain: str, experiment_id: str | None = None) -> dict[str, Any] | None:
    """The experiment ``experiment_id`` of ``domain``, or its latest (running first), as started
    plus ``stopped_at`` and ``winner``; None when the domain never ran one."""
    where, params = ("id = ?", [experiment_id]) if experiment_id else ("domain = ?", [domain])
    row = one(con, f"SELECT spec, stopped_at, winner FROM experiments WHERE {where} "
                   "ORDER BY stopped_at IS NULL DESC, started_at DESC LIMIT 1", params)
    if row is None:
        return None
    spec = json.loads(row[0])
    spec["stopped_at"] = row[1].replace(tzinfo=UTC).isoformat() if row[1] else None
    spec["winner"] = row[2]
    return dict(spec)


def _naive(moment: str | datetime) -> datetime:
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
