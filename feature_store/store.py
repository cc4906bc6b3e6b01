"""The feature store: users, items, events and item vectors in one DuckDB file.

One process opens the live file for writing (DuckDB locks it); training reads exported
snapshots and serving reads published ones (see :mod:`recengine.feature_store.snapshot`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import polars as pl

from recengine.feature_store import impressions, live_log, searches, snapshot, training
from recengine.feature_store.db import one, registered, run, single_row
from recengine.feature_store.errors import (
    IngestError,
    SchemaError,
    StoreError,
    StoreLockedError,
    UnknownEntitiesError,
    is_disk_full,
)
from recengine.feature_store.known_ids import KnownIds
from recengine.feature_store.live_log import LiveAck, LiveBatch, LiveChange, LiveState
from recengine.feature_store.readers import RawTable, expand_paths, read_source
from recengine.feature_store.schema import ITEM_ID, USER_ID, VALID_FROM, ColumnType, StoreSchema, table_columns
from recengine.feature_store.validate import conform, infer_kind, new_columns, normalise_names, refuse_new_columns

if TYPE_CHECKING:  # numpy loads with the first vector call
    from recengine.feature_store.vector_transforms import VectorTransform

DEFAULT_PATH = "recengine.duckdb"
KIND_ORDER = {"users": 0, "items": 1, "events": 2}
Vectorize = Callable[[pl.DataFrame], dict[str, Any]]  # item rows → {vector set: [rows, d] array}
_LOCK_PID = re.compile(r"PID (\d+)")


def default_store_path() -> str:
    """``$RECENGINE_STORE`` or ``./recengine.duckdb``."""
    return os.environ.get("RECENGINE_STORE", DEFAULT_PATH)


@dataclass
class IngestResult:
    """What one source added to the store."""

    source: str
    kind: str
    rows_read: int
    rows_added: int
    created_missing: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Staged:
    """A validated source, ready to write: its table, conformed rows and the columns it declares."""

    raw: RawTable
    kind: str
    frame: pl.DataFrame
    declared: dict[str, ColumnType]


class FeatureStore:
    """A DuckDB-backed feature store; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False,
                 schema: StoreSchema | None = None) -> None:
        self.path = Path(path or default_store_path())
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(f"store {self.path} does not exist; create it with `recengine store init`")
        self.con = _connect(self.path, read_only)
        self._lock = threading.RLock()
        self._pending_log: list[LiveChange] = []  # log entries of the live transaction under way
        self._known_ids = KnownIds()  # stored user/item ids: live batches skip the table scan for them
        if not read_only:
            self._create_tables(schema)
            live_log.create_tables(self.con)  # also in stores created before the live log
            impressions.create_tables(self.con)  # ... and before impressions
            run(self.con, searches.DDL)  # ... and before search events
            run(self.con, searches.VECTOR_DDL)
        self._schema = self._load_schema()
        if schema is not None and schema != self._schema:
            raise SchemaError(
                f"store {self.path} was created for the {self._schema.name!r} schema, not {schema.name!r}"
            )

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema(self) -> StoreSchema:
        return self._schema

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one thread (DuckDB connections are not shared across threads)."""
        return self.con.cursor()

    def sql(self, query: str, params: list[Any] | None = None) -> pl.DataFrame:
        """Run a read query and return a polars frame."""
        with self._lock:
            return self.con.sql(query, params=params).pl()

    def set_threads(self, threads: int) -> None:
        """How many threads DuckDB may use for this connection's queries."""
        with self._lock:
            run(self.con, f"SET threads TO {max(1, int(threads))}")

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection inside one transaction, held under the store's lock.

        Everything run on it sees one consistent state and lands all or nothing: the
        transaction commits when the block ends and rolls back if it raises. Other threads
        using this store wait until it is over.
        """
        with self._lock:
            self.con.begin()
            try:
                yield self.con
                self.con.commit()
            except BaseException:
                with suppress(duckdb.Error):  # a failed commit has already ended the transaction
                    self.con.rollback()
                raise

    # -- schema ------------------------------------------------------------------------
    def _create_tables(self, schema: StoreSchema | None) -> None:
        con = self.con
        run(con, "CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        if one(con, "SELECT 1 FROM store_meta WHERE key = 'schema'"):
            return
        schema = schema or StoreSchema()
        con.begin()
        for kind in ("users", "items", "events"):
            columns = table_columns(schema, kind)
            if kind == "events":
                columns = {**columns, "seq": ColumnType.int}
            ddl = ", ".join(f'"{name}" {ctype.sql}' for name, ctype in columns.items())
            extra = ", occurrence INTEGER NOT NULL" if kind == "events" else ""
            run(con, f"CREATE TABLE {kind} ({ddl}{extra})")
        run(con, "CREATE TABLE item_vectors (item_id VARCHAR NOT NULL, name VARCHAR NOT NULL, vector FLOAT[] NOT NULL)")
        run(con, "CREATE TABLE vector_sets (name VARCHAR PRIMARY KEY, dim INTEGER NOT NULL, updated_at TIMESTAMP)")
        run(con, "CREATE TABLE ingests (source VARCHAR, kind VARCHAR, rows_read BIGINT, rows_added BIGINT, "
                 "ingested_at TIMESTAMP)")
        run(con, "INSERT INTO store_meta VALUES ('schema', ?), ('snapshot_version', '0')",
                    [schema.model_dump_json()])
        con.commit()

    def _load_schema(self) -> StoreSchema:
        row = one(self.con, "SELECT value FROM store_meta WHERE key = 'schema'")
        if row is None:
            raise StoreError(f"{self.path} is not a recengine store (no schema); create it with `recengine store init`")
        return StoreSchema.model_validate_json(row[0])

    # -- ingest ------------------------------------------------------------------------
    def ingest(self, source: Any, kind: str | None = None, *, create_missing: bool = False,
               allow_new_columns: bool = False, replace: bool = False, name: str | None = None) -> IngestResult:
        """Ingest one file, polars frame or Arrow table; all or nothing (see :meth:`ingest_many`)."""
        return self.ingest_many([source], kind, create_missing=create_missing, allow_new_columns=allow_new_columns,
                                replace=replace, names=[name])[0]

    def ingest_paths(self, paths: Iterable[str | Path], kind: str | None = None, *, create_missing: bool = False,
                     allow_new_columns: bool = False, replace: bool = False) -> list[IngestResult]:
        """Ingest files and directories (their CSV/Parquet/RecBole files) in one transaction."""
        return self.ingest_many(expand_paths(list(paths)), kind, create_missing=create_missing,
                                allow_new_columns=allow_new_columns, replace=replace)

    def ingest_many(self, sources: list[Any], kind: str | None = None, *, create_missing: bool = False,
                    allow_new_columns: bool = False, replace: bool = False,
                    names: list[str | None] | None = None) -> list[IngestResult]:
        """Validate every source, then write them all in one transaction (users, items, events order).

        Nothing is written if any source fails: validation runs before the transaction, and
        checks that need the store (unknown users/items, new columns) roll it back. What a
        source may change is explicit:

        - ``kind`` names the table; without it the table is inferred strictly from RecBole
          suffixes or id columns, and a source that fits no table is refused.
        - ``allow_new_columns``: a source may add columns to a table that already holds rows
          (the first ingest into an empty table of an open schema declares them freely).
        - ``replace``: a user/item row is written exactly as given. By default it is a partial
          update: attributes the source leaves null or does not name keep the values of the
          version it updates (the id's newest stored one at or before its ``valid_from``).
        """
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only")
        if kind is not None and kind not in KIND_ORDER:
            raise StoreError(f"unknown kind {kind!r}; expected one of {list(KIND_ORDER)}")
        names = names or [None] * len(sources)
        schema = self._schema  # each source sees the columns the ones before it declared
        staged: list[_Staged] = []
        for source, name in zip(sources, names):
            item = self._prepare(read_source(source, name), kind, schema)
            schema = schema.with_columns(item.kind, item.declared) if item.declared else schema
            staged.append(item)
        staged.sort(key=lambda item: KIND_ORDER[item.kind])
        with self._lock:
            try:
                with _disk_full_is_store_error(self.path, "the store is unchanged"), self.transaction():
                    if not allow_new_columns:
                        self._refuse_widening_filled_tables(staged)
                    creatable = ("users", "items") if create_missing else ()
                    return [self._write(item, creatable, replace=replace)[0] for item in staged]
            except BaseException:
                self._schema = self._load_schema()  # undo columns the failed ingest declared
                raise

    def _refuse_widening_filled_tables(self, staged: list[_Staged]) -> None:
        """Raise for the first source that would add columns to a table already holding rows."""
        for item in staged:
            if item.declared and self._holds_rows(item.kind):
                raise refuse_new_columns(item.raw, item.kind, item.declared, self._schema)

    def _holds_rows(self, kind: str) -> bool:
        return one(self.con, f"SELECT 1 FROM {kind} LIMIT 1") is not None

    def _prepare(self, raw: RawTable, kind: str | None, schema: StoreSchema) -> _Staged:
        table_kind = kind or infer_kind(raw)
        if raw.kind and kind and raw.kind != kind:
            suffix = raw.source.rsplit(".", 1)[-1]
            raise IngestError(raw.source, f"a RecBole .{suffix} file holds {raw.kind}, not {kind}")
        raw = normalise_names(raw, table_kind)
        declared = new_columns(raw, table_kind, schema)
        widened = schema.with_columns(table_kind, declared) if declared else schema
        return _Staged(raw, table_kind, conform(raw, table_kind, widened), declared)

    def _write(self, item: _Staged, create: Collection[str], *, replace: bool,
               live: bool = False) -> tuple[IngestResult, pl.DataFrame]:
        """Write one staged source; returns what it added and the rows as written (user/item
        rows after the partial-update merge). ``create``: the kinds (users, items) events may
        create. ``live``: an HTTP batch (recorded in the live log, not ``ingests``), whose
        events skip the file re-ingest check (client event ids make retries idempotent)."""
        con, kind, frame = self.con, item.kind, item.frame
        if item.declared:
            for column, ctype in item.declared.items():
                run(con, f'ALTER TABLE {kind} ADD COLUMN "{column}" {ctype.sql}')
            self._schema = self._schema.with_columns(kind, item.declared)
            run(con, "UPDATE store_meta SET value = ? WHERE key = 'schema'", [self._schema.model_dump_json()])
        searched = None
        if kind == "events":
            frame, searched = searches.split_searches(frame)
            frame = frame.with_row_index("_row")  # file order, for seq and stable ties
        elif not replace:
            frame = self._keep_stored_values(kind, frame)
        with registered(con, "staged", frame):
            if kind == "events":
                created = self._add_missing_entities(item.raw, create, frame if live else None)
                added = self._insert_live_events() if live else self._insert_events(frame)
            else:
                created = 0
                added = self._upsert_entities(kind, frame.columns)
        if searched is not None and searched.height:
            with registered(con, "staged", searched):
                created += self._add_missing_entities(item.raw, create, kinds=("users",))
            added += searches.insert_searches(con, searched)
        if not live:  # files are recorded here; HTTP batches in the live log
            run(con, "INSERT INTO ingests VALUES (?, ?, ?, ?, now()::TIMESTAMP)",
                [item.raw.source, kind, item.frame.height, added])
        written = frame.drop("_row") if kind == "events" else frame
        if live and searched is not None and searched.height:  # logged beside the events, for the replicas
            written = pl.concat([written, searched], how="diagonal_relaxed")
        return IngestResult(item.raw.source, kind, item.frame.height, added, created), written

    def _keep_stored_values(self, kind: str, frame: pl.DataFrame) -> pl.DataFrame:
        """A partial update: each null attribute takes the value of the version the row updates.

        That version is the id's newest stored one at or before the row's ``valid_from`` (the
        row it replaces, when both share a ``valid_from``); rows of new ids stay as given.
        """
        id_column = USER_ID if kind == "users" else ITEM_ID
        if len(frame.columns) == 2 or not self._holds_rows(kind):  # no attributes, or nothing stored
            return frame
        kept = ", ".join(f's."{c}"' if c in (id_column, VALID_FROM) else f'coalesce(s."{c}", t."{c}") AS "{c}"'
                         for c in frame.columns)
        with registered(self.con, "partial", frame):
            return self.con.sql(
                f"SELECT {kept} FROM partial s ASOF LEFT JOIN {kind} t "
                f"ON s.{id_column} = t.{id_column} AND s.{VALID_FROM} >= t.{VALID_FROM}"
            ).pl()

    def _upsert_entities(self, kind: str, columns: list[str]) -> int:
        """Replace rows with the same (id, valid_from), insert the rest; identical re-ingests add nothing."""
        id_column = USER_ID if kind == "users" else ITEM_ID
        quoted = ", ".join(f'"{c}"' for c in columns)
        changed = single_row(self.con,
            f"SELECT count(*) FROM (SELECT {quoted} FROM staged EXCEPT SELECT {quoted} FROM {kind})"
        )[0]
        run(self.con,
            f"DELETE FROM {kind} t USING staged s "
            f"WHERE t.{id_column} = s.{id_column} AND t.{VALID_FROM} = s.{VALID_FROM}"
        )
        run(self.con, f"INSERT INTO {kind} ({quoted}) SELECT {quoted} FROM staged")
        return int(changed)

    def _add_missing_entities(self, raw: RawTable, create: Collection[str], live: pl.DataFrame | None = None,
                              kinds: Collection[str] = ("users", "items")) -> int:
        """Create the users/items (of ``kinds``) ``staged`` names that the store lacks (kinds in
        ``create``), else refuse them; ``live``: the staged frame of live batches, whose ids known
        to be stored skip the check (``KnownIds``)."""
        created = 0
        for kind, column in (("users", USER_ID), ("items", ITEM_ID)):
            if kind not in kinds:
                continue
            if live is not None and self._known_ids.hold(kind, live.get_column(column)):
                continue
            missing = f"SELECT DISTINCT s.{column} AS id FROM staged s ANTI JOIN {kind} t ON s.{column} = t.{column}"
            count, examples = single_row(self.con,
                f"SELECT count(*), list(id ORDER BY id)[1:5] FROM ({missing})")
            if not count:
                continue
            if kind not in create:
                raise UnknownEntitiesError(raw.source, kind, int(count), list(examples))
            run(self.con,
                f"INSERT INTO {kind} ({column}, {VALID_FROM}) SELECT id, TIMESTAMP '1970-01-01' FROM ({missing})"
            )
            created += int(count)
        return created

    def _insert_events(self, frame: pl.DataFrame) -> int:
        """Insert events not already stored; ``occurrence`` keeps genuine repeats within a file.

        A per-key ``row_number`` over the whole file (a sort on five columns, two of them
        strings) dominated bulk ingest, yet most files repeat no key. So it runs only over the
        rows whose key *hash* repeats (a superset of the true repeats, so the result is exact);
        other rows have occurrence 0. The anti-join against stored events is skipped while the
        table is empty, and a straight scan keeps file order without an ORDER BY.
        """
        start = single_row(self.con, "SELECT coalesce(max(seq), 0) + 1 FROM events")[0]
        before = single_row(self.con, "SELECT count(*) FROM events")[0]
        key = ["user_id", "item_id", "event_type", "ts", "value"]
        hashes = frame.select(key).hash_rows()  # polars: several times faster than a DuckDB GROUP BY here
        repeats = frame.filter(hashes.is_duplicated()) if hashes.n_unique() < frame.height else frame.clear()
        join, occurrence = "", "0"
        if repeats.height:
            join = f"""LEFT JOIN (
                SELECT _row, row_number() OVER (PARTITION BY {", ".join(key)} ORDER BY _row) - 1 AS occurrence
                FROM repeat_candidates
            ) r ON r._row = s._row"""
            occurrence = "coalesce(r.occurrence, 0)"
        anti = "" if not before else """
            ANTI JOIN events e
              ON e.user_id = n.user_id AND e.item_id = n.item_id AND e.event_type = n.event_type
             AND e.ts = n.ts AND e.value = n.value AND e.occurrence = n.occurrence"""
        order = "ORDER BY n.seq" if join or anti else ""
        with registered(self.con, "repeat_candidates", repeats):
            run(self.con, f"""
                INSERT INTO events (user_id, item_id, event_type, value, ts, request_id, seq, occurrence)
                SELECT n.user_id, n.item_id, n.event_type, n.value, n.ts, n.request_id, n.seq, n.occurrence
                FROM (
                    SELECT s.user_id, s.item_id, s.event_type, s.value, s.ts, s.request_id, {start} + s._row AS seq,
                           {occurrence} AS occurrence
                    FROM staged s {join}
                ) n {anti}
                {order}
            """)
        return int(single_row(self.con, "SELECT count(*) FROM events")[0] - before)

    def _insert_live_events(self) -> int:
        """Append the staged events of an HTTP batch (sequence numbers after the stored ones)."""
        start = single_row(self.con, "SELECT coalesce(max(seq), 0) + 1 FROM events")[0]
        inserted = single_row(self.con, f"""
            INSERT INTO events (user_id, item_id, event_type, value, ts, request_id, seq, occurrence)
            SELECT user_id, item_id, event_type, value, ts, request_id, {start} + _row, 0 FROM staged ORDER BY _row""")
        return int(inserted[0])  # DuckDB answers an INSERT with its row count

    # -- the live log (HTTP writes) ----------------------------------------------------
    def append_live(self, batches: list[LiveBatch], now: datetime | None = None,
                    vectorize: Vectorize | None = None,
                    logged: list[LiveChange] | None = None) -> list[LiveAck | Exception]:
        """Write HTTP batches durably, each all or nothing, in one commit when they all pass
        (group commit: one fsync for many batches); each gets its own sequence number.

        Every batch is validated by the file-ingest rules (``conform``), plus: no new
        columns, client event ids once per batch. A batch the store refuses (an unknown
        item, say) is answered with its own error and the others are committed without it.
        Returns each batch's :class:`LiveAck` or error, in order.

        ``vectorize`` (from the engine, which knows the encoders) gives posted items their
        vectors (``{set name: [rows, d]}``, e.g. a text embedding), stored with them in the
        same transaction and logged beside them as ``vector:<name>`` columns. ``logged``
        receives the committed log entries (what followers need), so nobody reads them back.
        """
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only")
        now = now or datetime.now(UTC)
        answers: list[LiveAck | Exception | None] = [None] * len(batches)
        staged = self._stage_live(batches, now, answers)
        with self._lock:
            self._known_ids.load(self.con)  # once; outside the transaction: committed ids only
            self._pending_log = []
            try:
                with _disk_full_is_store_error(self.path, "nothing of these batches was stored"), self.transaction():
                    events = {i: s for i, s in staged.items() if s[0].kind == "events"
                              and (batches[i].create_users, batches[i].create_items) == (True, False)
                              and not searches.has_searches(s[0].frame)}  # searches go their own way (_write)
                    ids = [e for _, event_ids in events.values() for e in event_ids if e is not None]
                    if len(set(ids)) < len(ids):  # a batch retried within its group: one by one, each sees the last
                        events = {}
                    if len(events) > 1:  # the common case under load: one insert for them all
                        for i, ack in self._append_events_together(events, now).items():
                            answers[i] = ack
                    for i, (item, event_ids) in staged.items():
                        if i not in events or len(events) == 1:
                            answers[i] = self._append_one(batches[i], item, event_ids, now, vectorize)
                committed = self._pending_log
            except (StoreError, duckdb.Error):  # some batch was refused by the store: the others one by one
                committed = []
                for i, (item, event_ids) in staged.items():
                    self._pending_log = []
                    try:
                        with _disk_full_is_store_error(self.path, "the batch was not stored"), self.transaction():
                            answers[i] = self._append_one(batches[i], item, event_ids, now, vectorize)
                        committed += self._pending_log
                    except UnknownEntitiesError as exc:
                        answers[i] = _unknown_in_batch(batches[i], exc)
                    except (StoreError, duckdb.Error) as exc:  # this batch alone (a duckdb.Error: a bug, a 500)
                        answers[i] = exc
            self._known_ids.learn(committed)
        if logged is not None:
            logged.extend(sorted(committed, key=lambda change: change.seq))
        return [answer if answer is not None else StoreError("batch not processed") for answer in answers]

    def _stage_live(self, batches: list[LiveBatch], now: datetime,
                    answers: list[LiveAck | Exception | None]) -> dict[int, tuple[_Staged, list[str | None]]]:
        """Validate each batch (a refused one gets its error in ``answers``). Event batches of
        the same columns and types are conformed as one frame (one pass of the validator for a
        whole group commit); if that refuses, each is conformed alone so the error names its
        own batch and record."""
        raws: dict[int, tuple[RawTable, list[str | None]]] = {}
        for i, batch in enumerate(batches):
            try:
                raws[i] = live_log.records_table(batch, now)
            except StoreError as exc:
                answers[i] = exc
        alike: dict[tuple[Any, ...], list[int]] = {}
        for i, (raw, _) in raws.items():
            if batches[i].kind == "events":
                alike.setdefault(tuple(raw.frame.schema.items()), []).append(i)
        staged: dict[int, tuple[_Staged, list[str | None]]] = {}
        for members in (m for m in alike.values() if len(m) > 1):
            try:
                combined = RawTable(pl.concat([raws[i][0].frame for i in members]), "batch", row_label="record",
                                    first_row=0)
                item = self._prepare(combined, "events", self._schema)
            except StoreError:
                continue  # conformed one by one below
            if item.declared:
                continue
            offset = 0
            for i in members:
                height = raws[i][0].frame.height
                staged[i] = _Staged(raws[i][0], "events", item.frame.slice(offset, height), {}), raws[i][1]
                offset += height
        for i, (raw, event_ids) in raws.items():
            if i in staged:
                continue
            try:
                item = self._prepare(raw, batches[i].kind, self._schema)
                if item.declared:
                    raise refuse_new_columns(item.raw, item.kind, item.declared, self._schema)
                staged[i] = item, event_ids
            except StoreError as exc:
                answers[i] = exc
        return dict(sorted(staged.items()))  # batch order: sequence numbers follow it

    def _append_events_together(self, staged: dict[int, tuple[_Staged, list[str | None]]],
                                now: datetime) -> dict[int, LiveAck]:
        """Event batches (unknown users created, unknown items refused) written with one
        statement per step instead of one per batch; each still gets its own sequence number
        and log entry. An unknown item raises, and the caller retries the batches one by one
        (so that the batch naming it alone is refused)."""
        all_ids = [e for _, ids in staged.values() for e in ids]
        known = live_log.known_event_ids(self.con, all_ids)
        acks: dict[int, LiveAck] = {}
        frames, kept_ids = [], {}
        for i, (item, event_ids) in staged.items():
            keep = [e is None or e not in known for e in event_ids]
            if not any(keep):
                acks[i] = LiveAck(max(known[e] for e in event_ids if e is not None), "events", 0, len(keep))
                continue
            frame = item.frame if all(keep) else item.frame.filter(pl.Series(keep))
            frames.append(frame.with_columns(pl.lit(i).alias("_batch")))
            kept_ids[i] = ([e for e, k in zip(event_ids, keep) if k and e is not None], len(keep) - sum(keep))
        if not frames:
            return acks
        combined = pl.concat(frames).with_row_index("_row")
        first = next(iter(staged.values()))[0].raw
        with registered(self.con, "staged", combined):
            self._add_missing_entities(first, ("users",), combined)
            self._insert_live_events()
        base = live_log.meta_int(self.con, "live_seq")
        order = list(kept_ids)
        seqs = {i: base + n for n, i in enumerate(order, start=1)}
        run(self.con, "UPDATE store_meta SET value = ? WHERE key = 'live_seq'", [str(base + len(order))])
        ids = [(e, seqs[i]) for i in order for e in kept_ids[i][0]]
        if ids:
            run(self.con, "INSERT INTO live_event_ids SELECT unnest(?::VARCHAR[]), unnest(?::BIGINT[])",
                [[e for e, _ in ids], [q for _, q in ids]])
        parts = combined.drop("_row").partition_by("_batch", as_dict=True, include_key=False)
        for i in order:
            written = parts[(i,)]
            live_log.log_batch(self.con, seqs[i], "events", written, now)
            self._pending_log.append(LiveChange(seqs[i], "events", written, _naive_utc(now)))
            acks[i] = LiveAck(seqs[i], "events", written.height, kept_ids[i][1])
        return acks

    def _append_one(self, batch: LiveBatch, item: _Staged, event_ids: list[str | None], now: datetime,
                    vectorize: Vectorize | None = None) -> LiveAck:
        """One batch inside the caller's transaction: skip events stored before under their
        ids, write the rest, log them under a new sequence number."""
        duplicates = 0
        if item.kind == "events":
            known = live_log.known_event_ids(self.con, event_ids)
            if known:
                keep = pl.Series([e is None or e not in known for e in event_ids])
                duplicates = len(event_ids) - int(keep.sum())
                if not keep.any():  # a retry of a stored batch: answer with its sequence number
                    return LiveAck(max(known.values()), item.kind, 0, duplicates)
                item = _Staged(item.raw, item.kind, item.frame.filter(keep), {})
                event_ids = [e for e, k in zip(event_ids, keep.to_list()) if k]
        elif item.kind == "items":
            item = _Staged(item.raw, item.kind, self._date_new_items(item.frame, now), {})
        creatable = [kind for kind, allowed in (("users", batch.create_users), ("items", batch.create_items))
                     if allowed]
        _, written = self._write(item, creatable, replace=batch.replace, live=True)
        if item.kind == "items" and vectorize is not None:
            written = self._store_vectors(written, vectorize(written))
        seq = live_log.next_seq(self.con)
        live_log.record_event_ids(self.con, [e for e in event_ids if e is not None], seq)
        live_log.log_batch(self.con, seq, item.kind, written, now)
        self._pending_log.append(LiveChange(seq, item.kind, written, _naive_utc(now)))
        return LiveAck(seq, item.kind, written.height, duplicates)

    def _date_new_items(self, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        """A new item posted without ``created_at`` was created now (what freshness rankers
        read); an update without it keeps the stored value (the partial-update merge)."""
        if "created_at" not in frame.columns or not frame["created_at"].null_count():
            return frame
        with registered(self.con, "posted", frame.select(ITEM_ID)):
            stored = self.con.sql(f"SELECT p.{ITEM_ID} FROM posted p SEMI JOIN items i USING ({ITEM_ID})").pl()
        is_new = ~frame[ITEM_ID].is_in(stored[ITEM_ID].implode())
        stamp = pl.lit(now.astimezone(UTC).replace(tzinfo=None), dtype=pl.Datetime("us"))
        return frame.with_columns(pl.when(is_new & pl.col("created_at").is_null()).then(stamp)
                                  .otherwise(pl.col("created_at")).alias("created_at"))

    def _store_vectors(self, items: pl.DataFrame, vectors: dict[str, Any]) -> pl.DataFrame:
        """Replace the posted items' vectors of each set (inside the caller's transaction);
        ``items`` with one ``vector:<name>`` column per set, for the log."""
        for name, matrix in vectors.items():
            column = pl.Series(f"vector:{name}", [list(map(float, row)) for row in matrix], dtype=pl.List(pl.Float32))
            frame = pl.DataFrame({"item_id": items[ITEM_ID], "vector": column})
            with registered(self.con, "posted_vectors", frame):
                run(self.con, "DELETE FROM item_vectors v USING posted_vectors s WHERE v.item_id = s.item_id "
                              "AND v.name = ?", [name])
                run(self.con, "INSERT INTO item_vectors SELECT item_id, ?, vector FROM posted_vectors", [name])
            items = items.with_columns(column)
        return items

    def set_vector_source(self, name: str, source: dict[str, Any]) -> None:
        """Record how vector set ``name`` was made (encoder, text fields), so that items
        posted later get theirs the same way."""
        with self.transaction() as con:
            run(con, "INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [f"vector_source:{name}", json.dumps(source)])

    def vector_sources(self) -> dict[str, dict[str, Any]]:
        """Vector set name → how it was made (:meth:`set_vector_source`)."""
        with self._lock:
            rows = self.con.execute("SELECT key, value FROM store_meta WHERE key LIKE 'vector_source:%'").fetchall()
        return {key.split(":", 1)[1]: json.loads(value) for key, value in rows}

    def changes_since(self, seq: int, limit: int = 256) -> list[LiveChange]:
        """Live batches committed after ``seq`` (what replicas merge with their snapshot)."""
        with self._lock:
            return live_log.changes_since(self.con, seq, limit)

    def live_state(self) -> LiveState:
        """The live log's last sequence number and what came since the last publish."""
        with self._lock:
            if one(self.con, "SELECT 1 FROM information_schema.tables WHERE table_name = 'live_log'") is None:
                return LiveState(0, 0, live_log.meta_int(self.con, "published_version"), 0, 0)
            return live_log.state(self.con)

    # -- impressions and experiments (online metrics) --------------------------------
    def log_impressions(self, rows: pl.DataFrame | list[dict[str, Any]]) -> int:
        """Store what recommendations showed (one row per item shown), durably, all or none."""
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only")
        frame = impressions.impressions_frame(rows)
        with self._lock, _disk_full_is_store_error(self.path, "the impressions were not stored"), \
                self.transaction() as con:
            return impressions.append(con, frame)

    def record_experiment(self, spec: dict[str, Any]) -> None:
        """Record an experiment as started (its arms, split and mode)."""
        with self._lock, self.transaction() as con:
            if impressions.experiment(con, spec["domain"], spec["id"]) is not None:
                raise StoreError(f"experiment {spec['id']!r} already exists")
            impressions.record_experiment(con, spec)

    def stop_experiment(self, experiment_id: str, winner: str | None = None) -> None:
        with self._lock, self.transaction() as con:
            impressions.stop_experiment(con, experiment_id, winner)

    def experiment(self, domain: str, experiment_id: str | None = None) -> dict[str, Any] | None:
        """An experiment as recorded (the domain's running one, else its latest), or None."""
        with self._lock:
            if not self._has_table("experiments"):
                return None
            return impressions.experiment(self.cursor(), domain, experiment_id)

    def _has_table(self, name: str) -> bool:
        return one(self.con, "SELECT 1 FROM information_schema.tables WHERE table_name = ?", [name]) is not None

    # -- item vectors ------------------------------------------------------------------
    def write_vectors(self, name: str, item_ids: list[str], matrix: Any, *, source: str = "<vectors>") -> int:
        """Store (or replace) one vector per item in the named set; all rows or none.

        Rejects unknown item ids, a dimension other than the set's, and NaN/inf values. The
        vectors are stored as given: a set with a saved transform (:meth:`vector_transform`)
        takes vectors already transformed (``recengine.vectors.store_raw_vectors`` does that).
        """
        frame, dim = self._vector_frame(name, item_ids, matrix, source)
        with self._lock:
            known_dim = one(self.con, "SELECT dim FROM vector_sets WHERE name = ?", [name])
            if known_dim and known_dim[0] != dim:
                raise IngestError(source, f"vectors have dimension {dim}", column="vector",
                                  expected=f"dimension {known_dim[0]}, as set {name!r} already has")
            with self.transaction() as con, registered(con, "staged_vectors", frame):
                self._insert_vectors(con, name, dim, source)
        return len(item_ids)

    def replace_vector_set(self, name: str, item_ids: list[str], matrix: Any, *, transform: VectorTransform | None,
                           source: str = "<vectors>") -> int:
        """Make set ``name`` exactly these vectors (its dimension may change) with ``transform``
        (the transform they went through, or None for raw vectors) saved beside them; all in one transaction, so a
        failure leaves the old set and its transform as they were."""
        from recengine.feature_store import vector_transforms

        frame, dim = self._vector_frame(name, item_ids, matrix, source)
        if transform is not None and transform.dim != dim:
            raise IngestError(source, f"vectors have dimension {dim}", column="vector",
                              expected=f"dimension {transform.dim}, the transform's output")
        with self._lock, self.transaction() as con, registered(con, "staged_vectors", frame):
            run(con, "DELETE FROM item_vectors WHERE name = ?", [name])
            searches.delete_query_vectors(con, name)  # embedded for the old set's space: built again
            self._insert_vectors(con, name, dim, source)
            if transform is None:
                vector_transforms.delete(con, name)
            else:
                vector_transforms.save(con, name, transform)
        return len(item_ids)

    def _vector_frame(self, name: str, item_ids: list[str], matrix: Any, source: str) -> tuple[pl.DataFrame, int]:
        """Checked ``(item_id, vector)`` rows and their dimension (name, shape, finite values)."""
        import numpy as np

        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only")
        if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise IngestError(source, f"invalid vector set name {name!r}", expected="letters, digits, _ . -")
        vectors = np.asarray(matrix, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(item_ids):
            raise IngestError(source, f"vectors have shape {vectors.shape} for {len(item_ids)} ids",
                              expected="a 2-D array with one row per item id")
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            raise IngestError(source, f"vector of item {item_ids[row]!r} has NaN or infinite values",
                              row=row + 1, column="vector", expected="finite numbers")
        frame = pl.DataFrame({"item_id": pl.Series(item_ids, dtype=pl.String),
                              "vector": pl.Series(vectors.tolist(), dtype=pl.List(pl.Float32))})
        return frame, int(vectors.shape[1])

    @staticmethod
    def _insert_vectors(con: duckdb.DuckDBPyConnection, name: str, dim: int, source: str) -> None:
        """Replace the items of registered ``staged_vectors`` in set ``name`` (caller's transaction)."""
        unknown = single_row(con,
            "SELECT count(*), list(item_id ORDER BY item_id)[1:5] FROM staged_vectors s "
            "ANTI JOIN items i ON s.item_id = i.item_id")
        if unknown[0]:
            raise UnknownEntitiesError(source, "items", int(unknown[0]), list(unknown[1]))
        run(con, "DELETE FROM item_vectors v USING staged_vectors s "
                 "WHERE v.item_id = s.item_id AND v.name = ?", [name])
        run(con, "INSERT INTO item_vectors SELECT item_id, ?, vector FROM staged_vectors", [name])
        run(con, "INSERT OR REPLACE INTO vector_sets VALUES (?, ?, now()::TIMESTAMP)", [name, dim])

    def vector_transforms(self) -> dict[str, VectorTransform]:
        """Set name → the transform its stored vectors went through (only sets that have one)."""
        from recengine.feature_store import vector_transforms

        with self._lock:
            return vector_transforms.load_all(self.con)

    def vector_transform(self, name: str) -> VectorTransform | None:
        """Set ``name``'s saved transform (a ``VectorTransform``), or None for raw vectors."""
        return self.vector_transforms().get(name)

    def unembedded_queries(self, name: str) -> list[str]:
        """Searched queries without a vector in set ``name`` (what ``vectors build`` embeds next)."""
        with self._lock:
            return searches.unembedded_queries(self.con, name) if self._has_table(searches.TABLE) else []

    def write_query_vectors(self, name: str, queries: list[str], matrix: Any, *, source: str = "<queries>") -> int:
        """Store (or replace) one vector per query text in set ``name``, which must exist with
        that dimension (queries are embedded into an item set's space); all rows or none."""
        import numpy as np

        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only")
        vectors = np.asarray(matrix, dtype=np.float32)
        with self._lock:
            known_dim = one(self.con, "SELECT dim FROM vector_sets WHERE name = ?", [name])
            if known_dim is None:
                raise StoreError(f"no item vectors named {name!r}: queries are embedded into an item vector set")
            if vectors.ndim != 2 or vectors.shape != (len(queries), known_dim[0]):
                raise IngestError(source, f"query vectors have shape {vectors.shape} for {len(queries)} queries",
                                  column="vector", expected=f"one {known_dim[0]}-d row per query, as set {name!r} has")
            if not np.isfinite(vectors).all():
                raise IngestError(source, "a query vector has NaN or infinite values", column="vector",
                                  expected="finite numbers")
            frame = pl.DataFrame({"query": pl.Series(queries, dtype=pl.String),
                                  "vector": pl.Series(vectors.tolist(), dtype=pl.List(pl.Float32))})
            with self.transaction() as con:
                searches.insert_query_vectors(con, name, frame)
        return len(queries)

    def read_query_vectors(self, name: str) -> tuple[list[str], Any]:
        """``(queries, float32 matrix)`` of set ``name``'s query vectors (empty when none)."""
        import numpy as np

        frame = self.sql(f"SELECT query, vector FROM {searches.VECTOR_TABLE} WHERE name = ? ORDER BY query", [name]) \
            if self._has_table(searches.VECTOR_TABLE) else pl.DataFrame({"query": [], "vector": []})
        dim = one(self.con, "SELECT dim FROM vector_sets WHERE name = ?", [name])
        matrix = np.asarray(frame["vector"].to_list(), dtype=np.float32).reshape(frame.height, dim[0] if dim else 0)
        return frame["query"].to_list(), matrix

    def read_vectors(self, name: str) -> tuple[list[str], Any]:
        """``(item_ids, float32 matrix)`` of a named vector set."""
        import numpy as np

        frame = self.sql("SELECT item_id, vector FROM item_vectors WHERE name = ? ORDER BY item_id", [name])
        if frame.height == 0:
            known = self.sql("SELECT name FROM vector_sets")["name"].to_list()
            raise StoreError(f"no item vectors named {name!r}; the store has {known} (embed item text with "
                             f"`recengine vectors build --vector {name}`, or load vectors with `recengine vectors "
                             f"ingest`)")
        return frame["item_id"].to_list(), np.asarray(frame["vector"].to_list(), dtype=np.float32)

    # -- snapshots ---------------------------------------------------------------------
    def export_snapshot(self, root: str | Path | None = None,
                        history: int = snapshot.DEFAULT_HISTORY) -> snapshot.SnapshotInfo:
        """Write a consistent, numbered Parquet snapshot (for training) in one transaction.

        ``root`` defaults to ``<store>.snapshots/`` beside the DuckDB file. On failure no
        version is left behind and the snapshot counter is unchanged.
        """
        root = Path(root) if root else snapshot.default_root(self.path)
        with _disk_full_is_store_error(root, "no snapshot was written"), self.transaction() as con:
            return snapshot.export_snapshot(con, root, self._schema, history)

    def publish(self, root: str | Path | None = None, version: int | None = None,
                history: int = snapshot.DEFAULT_HISTORY) -> snapshot.SnapshotInfo:
        """Export a new snapshot (or pick an existing ``version``) and make it the one serving reads."""
        root = Path(root) if root else snapshot.default_root(self.path)
        if version is None:
            with _disk_full_is_store_error(root, "no snapshot was written"), self.transaction() as con:
                info = snapshot.export_snapshot(con, root, self._schema, history)
                live_log.mark_published(con, info.version)
        else:
            info = snapshot.read_manifest(root / snapshot.version_name(version))
        with _disk_full_is_store_error(root, "the published snapshot is unchanged"):
            snapshot.set_current(root, info.version)
        return info

    def copy_to(self, target: str | Path) -> Path:
        """A consistent copy of the whole store as a new DuckDB file at ``target`` (what a
        reader gets while another process holds this one read-write)."""
        target = Path(target)
        if target.exists():
            raise StoreError(f"cannot copy the store to {target}: the file exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, _disk_full_is_store_error(target, "no copy was made"):
            source = single_row(self.con, "SELECT current_database()")[0]
            run(self.con, f"ATTACH '{target}' AS store_copy")
            try:
                run(self.con, f'COPY FROM DATABASE "{source}" TO store_copy')
            finally:
                run(self.con, "DETACH store_copy")
        return target

    # -- reads -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Row counts, event types and time span, for ``recengine store stats``."""
        with self._lock:
            users = single_row(self.con, "SELECT count(DISTINCT user_id) FROM users")[0]
            items = single_row(self.con, "SELECT count(DISTINCT item_id) FROM items")[0]
            events, first, last = single_row(self.con, "SELECT count(*), min(ts), max(ts) FROM events")
            by_type = dict(self.con.execute(
                "SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC").fetchall())
            vectors = dict(self.con.execute(
                "SELECT name, dim FROM vector_sets ORDER BY name").fetchall())
            searched = single_row(self.con, "SELECT count(*) FROM searches")[0] if self._has_table("searches") else 0
            transforms = {name: t.describe() for name, t in self.vector_transforms().items()}
            version = single_row(self.con, "SELECT value FROM store_meta WHERE key = 'snapshot_version'")[0]
        return {
            "path": str(self.path),
            "schema": self._schema.name,
            "users": users,
            "items": items,
            "events": events,
            "event_types": by_type,
            "searches": searched,
            "first_event": first.isoformat() if first else None,
            "last_event": last.isoformat() if last else None,
            "vector_sets": vectors,
            "vector_transforms": transforms,
            "snapshot_version": int(version),
            "live": self._live_summary(),
            "user_columns": {k: v.value for k, v in self._schema.user_columns.items()},
            "item_columns": {k: v.value for k, v in self._schema.item_columns.items()},
        }

    def _live_summary(self) -> dict[str, Any]:
        state = self.live_state()
        return {"seq": state.seq, "published_seq": state.published_seq,
                "batches_since_publish": state.batches_since_publish,
                "records_since_publish": state.records_since_publish}

    def searches(self, users: list[str] | None = None) -> pl.DataFrame:
        """The search events (``user_id, query, ts``) by user and time, or only ``users'``."""
        with self._lock:
            if not self._has_table(searches.TABLE):  # a read-only store made before search events
                return pl.DataFrame(schema={USER_ID: pl.String, "query": pl.String, "ts": pl.Datetime("us")})
            return searches.read_searches(self.con, users)

    def latest(self, kind: str) -> pl.DataFrame:
        """Current attributes of every user or item (its newest ``valid_from`` version)."""
        id_column = USER_ID if kind == "users" else ITEM_ID
        return self.sql(f"SELECT * FROM {kind} "
                        f"QUALIFY row_number() OVER (PARTITION BY {id_column} ORDER BY {VALID_FROM} DESC) = 1 "
                        f"ORDER BY {id_column}")

    # -- training sets (SQL in recengine.feature_store.training) -----------------------------------
    def training_set(self, history: int = 50, event_types: list[str] | None = None,
                     out: str | Path | None = None) -> pl.DataFrame | Path:
        """Every event with point-in-time user/item attributes and its last-N item history.

        With ``out``, the set is written to that Parquet file inside DuckDB (for sets too big
        to hold in memory as a frame) and the path is returned.
        """
        query = training.training_set_sql(self._schema, history, event_types)
        with self._lock:
            if out is None:
                return self.con.sql(query).pl()
            target = Path(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            run(self.con, f"COPY ({query}) TO '{target}' (FORMAT parquet)")
            return target

    def split(self, protocol: str, *, seed: int = 2020, cold_fraction: float = 0.1, fold: int = 0,
              folds: int = 5) -> pl.DataFrame:
        """Events labelled train/valid/test by protocol ``seq``, ``gen``, ``cold`` or ``rating`` (DESIGN §6)."""
        query = training.split_sql(protocol, seed=seed, cold_fraction=cold_fraction, fold=fold, folds=folds)
        with self._lock:
            return self.con.sql(query).pl()


def _naive_utc(moment: datetime) -> datetime:
    """A time as the store keeps it: UTC, without a zone."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def _unknown_in_batch(batch: LiveBatch, exc: UnknownEntitiesError) -> IngestError:
    """An HTTP batch naming items the store lacks: which record, and what to do instead."""
    column = USER_ID if exc.kind == "users" else ITEM_ID
    first = next((i for i, r in enumerate(batch.records) if r.get(column) == exc.examples[0]), None)
    return IngestError(batch.source, f"{exc.count} event(s) name {exc.kind} not in the store, e.g. {exc.examples}",
                       row=first, row_label="record", column=column,
                       expected=f"{exc.kind} the store has: post them first (POST /<domain>/{exc.kind}), "
                                "or serve with --create-items")


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        message = str(exc)
        if "lock" in message.lower():
            match = _LOCK_PID.search(message)
            raise StoreLockedError(str(path), int(match.group(1)) if match else None, message) from None
        raise StoreError(f"cannot open store {path}: {message}") from None
    except duckdb.Error as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from None
    # DuckDB draws a progress bar on stdout for queries over 2 s, inside `--json` output too
    run(con, "SET enable_progress_bar = false")
    return con



@contextmanager
def _disk_full_is_store_error(path: Path, outcome: str) -> Iterator[None]:
    """Turn "no space left on device" (from DuckDB or the OS) into a :class:`StoreError` naming
    ``path`` and saying what state the failure left (``outcome``)."""
    try:
        yield
    except (OSError, duckdb.Error) as exc:
        if not is_disk_full(exc):
            raise
        raise StoreError(f"no space left on device writing {path}: {outcome}. "
                         f"Free space there and retry ({str(exc).splitlines()[0]})") from exc
