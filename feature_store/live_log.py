"""The store's live log: records written over HTTP (events, items, users), each batch under
one sequence number, durable in the same transaction as the rows it adds.

Serving replicas follow the log (:func:`changes_since`) to merge what was written after the
published snapshot with it; ``recengine store publish`` records the last sequence number a
snapshot holds (``SnapshotInfo.live_seq``), so replicas drop what the snapshot already has.
Client event ids (``event_id``) make a retried batch a no-op: ids seen before are skipped
and the batch is answered with the sequence number that first stored them.

JSON records become a :class:`~recengine.feature_store.readers.RawTable` whose scalar values
are text, exactly like a CSV file's, so one validator (``conform``) checks files and HTTP
batches alike and reports ``record <i>, column '<field>'`` for the first problem.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl

from recengine.feature_store.db import one, run, single_row
from recengine.feature_store.errors import IngestError
from recengine.feature_store.readers import RawTable

LIVE_KINDS = ("users", "items", "events")
EVENT_ID = "event_id"
MAX_EVENT_ID_CHARS = 128

DDL = (
    "CREATE TABLE IF NOT EXISTS live_log (seq BIGINT PRIMARY KEY, kind VARCHAR NOT NULL, "
    "records BIGINT NOT NULL, payload BLOB NOT NULL, committed_at TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS live_event_ids (event_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL)",
)


@dataclass
class LiveBatch:
    """One write request: ``records`` (JSON objects) for the ``kind`` table.

    ``create_users``: events may name users the store lacks (a live site's new visitors);
    ``create_items``: events may name items it lacks (off by default: a typo must not
    become an item). ``replace``: user/item records are written exactly as given instead of
    updating only the fields they name.
    """

    kind: str
    records: list[dict[str, Any]]
    source: str = "batch"
    create_users: bool = True
    create_items: bool = False
    replace: bool = False


@dataclass
class LiveAck:
    """What a durable batch got: its sequence number, and how many records it added
    (``duplicates`` were skipped as already stored under their client event ids)."""

    seq: int
    kind: str
    accepted: int
    duplicates: int = 0


@dataclass
class LiveChange:
    """One committed batch as the log holds it: the rows as written (after partial-update
    merging), for replicas to merge with their snapshot."""

    seq: int
    kind: str
    frame: pl.DataFrame
    committed_at: datetime


@dataclass
class LiveState:
    """Where the log stands: the last sequence number, the last one a published snapshot
    holds (and that snapshot's version), and how many batches and records came since."""

    seq: int
    published_seq: int
    published_version: int
    batches_since_publish: int
    records_since_publish: int


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        run(con, statement)
    run(con, "INSERT OR IGNORE INTO store_meta VALUES ('live_seq', '0'), ('published_live_seq', '0')")


def meta_int(con: duckdb.DuckDBPyConnection, key: str) -> int:
    row = one(con, "SELECT value FROM store_meta WHERE key = ?", [key])
    return int(row[0]) if row else 0


def next_seq(con: duckdb.DuckDBPyConnection) -> int:
    """The next batch's sequence number, reserved inside the caller's transaction."""
    seq = meta_int(con, "live_seq") + 1
    run(con, "UPDATE store_meta SET value = ? WHERE key = 'live_seq'", [str(seq)])
    return seq


def records_table(batch: LiveBatch, now: datetime) -> tuple[RawTable, list[str | None]]:
    """The batch as a raw table for the validator, and its client event ids (events only).

    Scalars become text (as a CSV file holds them), lists stay lists, an object is refused;
    an event without ``ts`` gets ``now`` (server time).
    """
    if batch.kind not in LIVE_KINDS:
        raise IngestError(batch.source, f"unknown kind {batch.kind!r}", expected=f"one of {list(LIVE_KINDS)}")
    if not batch.records:
        raise IngestError(batch.source, "the batch has no records", expected="at least one record")
    names: dict[str, None] = {}
    for index, record in enumerate(batch.records):
        if not isinstance(record, dict):
            raise IngestError(batch.source, "a record must be a JSON object", row=index, row_label="record")
        names.update(dict.fromkeys(record))
    columns = {name: _column(batch, name) for name in names}
    event_ids: list[str | None] = []
    if batch.kind == "events":
        event_ids = [v if isinstance(v, str) else None for v in columns.pop(EVENT_ID, [None] * len(batch.records))]
        _check_event_ids(batch, event_ids)
        times = columns.get("ts") or [None] * len(batch.records)
        stamped = now.astimezone(UTC).replace(tzinfo=None)
        columns["ts"] = [stamped.isoformat() if value is None else value for value in times]
        if all(value is None for value in times):  # server time alone: typed, nothing to parse
            columns["ts"] = [stamped] * len(times)
    frame = pl.DataFrame({name: _series(name, values) for name, values in columns.items()})
    return RawTable(frame, batch.source, row_label="record", first_row=0), event_ids


def _column(batch: LiveBatch, name: str) -> list[Any]:
    """One field's values across the batch: text for scalars, lists of text for lists."""
    values: list[Any] = []
    kind = None
    for index, record in enumerate(batch.records):
        value = record.get(name)
        if isinstance(value, dict):
            raise IngestError(batch.source, "a field value must be a string, number, boolean, list or null, "
                                            "not an object", row=index, row_label="record", column=name)
        if value is not None:
            shape = "list" if isinstance(value, list) else "scalar"
            if kind is not None and shape != kind:
                raise IngestError(batch.source, f"is a {shape} here but a {kind} in an earlier record",
                                  row=index, row_label="record", column=name, expected="one shape per field")
            kind = shape
        values.append(_text(value, batch, index, name))
    return values


def _text(value: Any, batch: LiveBatch, index: int, name: str) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        if any(isinstance(v, list | dict) for v in value):
            raise IngestError(batch.source, "a list value must hold strings or numbers, not lists or objects",
                              row=index, row_label="record", column=name)
        return [None if v is None else _text(v, batch, index, name) for v in value]
    raise IngestError(batch.source, f"unsupported value of type {type(value).__name__}",
                      row=index, row_label="record", column=name)


def _series(name: str, values: list[Any]) -> pl.Series:
    if values and isinstance(values[0], datetime):
        return pl.Series(name, values, dtype=pl.Datetime("us"))
    if any(isinstance(v, list) for v in values):
        return pl.Series(name, values, dtype=pl.List(pl.String))
    return pl.Series(name, values, dtype=pl.String)


def _check_event_ids(batch: LiveBatch, event_ids: list[str | None]) -> None:
    """Client event ids are non-empty strings of bounded length, once per batch."""
    seen: dict[str, int] = {}
    for index, (record, event_id) in enumerate(zip(batch.records, event_ids)):
        raw = record.get(EVENT_ID)
        if raw is not None and (not isinstance(raw, str) or not raw or len(raw) > MAX_EVENT_ID_CHARS):
            raise IngestError(batch.source, f"event_id must be a string of 1 to {MAX_EVENT_ID_CHARS} characters",
                              row=index, row_label="record", column=EVENT_ID)
        if event_id is None:
            continue
        if event_id in seen:
            raise IngestError(batch.source, f"event_id {event_id!r} appears twice in the batch "
                                            f"(records {seen[event_id]} and {index})",
                              row=index, row_label="record", column=EVENT_ID, expected="each event id once")
        seen[event_id] = index


def known_event_ids(con: duckdb.DuckDBPyConnection, event_ids: list[str | None]) -> dict[str, int]:
    """Those of ``event_ids`` already stored, with the sequence number that stored them."""
    wanted = [e for e in event_ids if e is not None]
    if not wanted:
        return {}
    rows = con.execute("SELECT event_id, seq FROM live_event_ids WHERE event_id IN (SELECT unnest(?))",
                       [wanted]).fetchall()
    return {str(event_id): int(seq) for event_id, seq in rows}


def record_event_ids(con: duckdb.DuckDBPyConnection, event_ids: list[str], seq: int) -> None:
    if event_ids:
        run(con, "INSERT INTO live_event_ids SELECT unnest(?::VARCHAR[]), ?", [event_ids, seq])


def log_batch(con: duckdb.DuckDBPyConnection, seq: int, kind: str, frame: pl.DataFrame, now: datetime) -> None:
    """Append the rows as written to the log (Arrow IPC keeps their types exactly)."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="lz4")
    run(con, "INSERT INTO live_log VALUES (?, ?, ?, ?, ?)",
        [seq, kind, frame.height, buffer.getvalue(), now.astimezone(UTC).replace(tzinfo=None)])


def changes_since(con: duckdb.DuckDBPyConnection, seq: int, limit: int = 256) -> list[LiveChange]:
    """Committed batches after ``seq``, oldest first, at most ``limit``."""
    rows = con.execute("SELECT seq, kind, payload, committed_at FROM live_log WHERE seq > ? ORDER BY seq LIMIT ?",
                       [seq, limit]).fetchall()
    return [LiveChange(int(s), str(kind), pl.read_ipc(io.BytesIO(payload)), committed_at)
            for s, kind, payload, committed_at in rows]


def state(con: duckdb.DuckDBPyConnection) -> LiveState:
    published = meta_int(con, "published_live_seq")
    batches, records = single_row(
        con, "SELECT count(*), coalesce(sum(records), 0) FROM live_log WHERE seq > ?", [published])
    version = meta_int(con, "published_version")
    return LiveState(meta_int(con, "live_seq"), published, version, int(batches), int(records))


def mark_published(con: duckdb.DuckDBPyConnection, version: int) -> int:
    """Record that a snapshot now holds the log up to its last sequence number, and forget
    the batches an earlier publish already folded (replicas reload past them)."""
    previous = meta_int(con, "published_live_seq")
    seq = meta_int(con, "live_seq")
    run(con, "UPDATE store_meta SET value = ? WHERE key = 'published_live_seq'", [str(seq)])
    run(con, "INSERT OR REPLACE INTO store_meta VALUES ('published_version', ?)", [str(version)])
    run(con, "DELETE FROM live_log WHERE seq <= ?", [previous])
    return seq
