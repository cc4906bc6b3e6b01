"""Turn a raw frame into a table's declared columns and types, or say exactly what is wrong.

Every check is a vectorised polars expression; only the first offending row is looked up
to build the error message.
"""

from __future__ import annotations

import duckdb
import polars as pl

from recengine.feature_store.errors import IngestError
from recengine.feature_store.readers import RawTable
from recengine.feature_store.schema import (
    ITEM_ID,
    QUERY,
    SEARCH_EVENT,
    USER_ID,
    VALID_FROM,
    ColumnType,
    StoreSchema,
    table_columns,
)
from recengine.feature_store.source_types import check_source_type, is_text

REQUIRED = {"users": (USER_ID,), "items": (ITEM_ID,), "events": (USER_ID, ITEM_ID, "ts")}
ALIASES = {
    "events": {"timestamp": "ts", "time": "ts", "rating": "value", "event": "event_type", "type": "event_type"},
    "items": {"published_at": "created_at", "name": "title"},
    "users": {},
}
_EPOCH = pl.datetime(1970, 1, 1, time_unit="us")


# names a timestamp column may have in an events file (``ts`` or one of its aliases)
TIMESTAMP_NAMES = ("ts", *(alias for alias, target in ALIASES["events"].items() if target == "ts"))
_KIND_RULE = ("user_id, item_id and ts (or timestamp/time) for events, user_id alone for users, "
              "item_id alone for items; or name the table with kind= (--kind)")


def infer_kind(raw: RawTable) -> str:
    """The table a source belongs to: its RecBole suffix, else its columns, strictly.

    user_id + item_id + a timestamp is events, user_id alone users, item_id alone items.
    Anything else fits no table cleanly and is refused, naming what is missing, rather than
    guessed: an events file that lost its item column must not land in the users table.
    """
    if raw.kind:
        return raw.kind
    columns = raw.frame.columns
    has_user, has_item = USER_ID in columns, ITEM_ID in columns
    timestamps = [name for name in TIMESTAMP_NAMES if name in columns]
    if has_user and (has_item or QUERY in columns) and timestamps:
        return "events"  # a file of searches alone (user_id, query, ts) is events too
    if has_user != has_item and not timestamps:
        return "users" if has_user else "items"
    if has_user and has_item:
        problem, missing = "it has user_id and item_id but no timestamp column, so it is not events", ["ts"]
    elif has_user or has_item:
        present, absent = (USER_ID, ITEM_ID) if has_user else (ITEM_ID, USER_ID)
        problem = f"it has {present} and a timestamp column {timestamps[0]!r}, like events, but no {absent}"
        missing = [absent]
    else:
        problem, missing = "it has neither a user_id nor an item_id column", [USER_ID, ITEM_ID]
    raise IngestError(
        raw.source, f"cannot tell whether this holds users, items or events: {problem} "
                    f"(missing {missing}; columns {columns})",
        expected=_KIND_RULE,
    )


def normalise_names(raw: RawTable, kind: str) -> RawTable:
    """Apply column aliases (``timestamp``→``ts``, ``rating``→``value``, ``*_title``→``title``)."""
    frame = raw.frame
    renames: dict[str, str] = {}
    for source_name, target in ALIASES[kind].items():
        if source_name in frame.columns and target not in frame.columns:
            renames[source_name] = target
    if kind == "items" and "title" not in frame.columns and "title" not in renames.values():
        titled = [c for c in frame.columns if c.endswith("_title")]
        if len(titled) == 1:
            renames[titled[0]] = "title"
    if kind == "events" and renames.get("rating") == "value" and "event_type" not in frame.columns:
        frame = frame.with_columns(pl.lit("rating").alias("event_type"))
    if not renames:
        return raw
    declared = {renames.get(name, name): t for name, t in raw.declared.items()}
    if kind == "items" and "title" in declared:
        declared["title"] = ColumnType.string  # a title is text, even if tokenised upstream
    raw.frame = frame.rename(renames)
    raw.declared = declared
    return raw


def new_columns(raw: RawTable, kind: str, schema: StoreSchema) -> dict[str, ColumnType]:
    """Columns of the source the schema does not declare yet, with their inferred types.

    A closed (domain) schema rejects them; an open one declares them.
    """
    known = set(table_columns(schema, kind))
    if kind == "events":
        known.add(QUERY)  # search events' text; such rows go to the searches table
        extra = [c for c in raw.frame.columns if c not in known]
        if extra:
            raise IngestError(raw.source, f"unexpected column(s) {extra} in events", column=extra[0],
                              expected=f"only {sorted(known)}")
        return {}
    extra = [c for c in raw.frame.columns if c not in known]
    if extra and not schema.open:
        raise IngestError(
            raw.source, f"column(s) {extra} are not declared for {kind} in the {schema.name!r} schema",
            column=extra[0], expected=f"columns among {sorted(known)}",
        )
    return {name: raw.declared.get(name) or _infer_type(raw.frame[name]) for name in extra}


def refuse_new_columns(raw: RawTable, kind: str, added: dict[str, ColumnType], schema: StoreSchema) -> IngestError:
    """The error for a source that would add columns to a table already holding rows.

    Widening a filled table is a schema change (every stored row gets nulls there), so it
    takes ``allow_new_columns=True``; the first ingest into an empty table declares freely.
    """
    return IngestError(
        raw.source, f"would add column(s) {list(added)} to the {kind} table, which already holds rows",
        column=next(iter(added)),
        expected=f"only its columns {list(table_columns(schema, kind))}, "
                 "or allow_new_columns=True (--allow-new-columns) to add them",
    )


def _infer_type(series: pl.Series) -> ColumnType:
    if series.dtype != pl.String:
        return ColumnType.from_polars(series.dtype)
    values = series.drop_nulls()
    for candidate in (ColumnType.int, ColumnType.float):
        if values.len() and values.cast(candidate.polars, strict=False).null_count() == 0:
            return candidate
    return ColumnType.string


def conform(raw: RawTable, kind: str, schema: StoreSchema) -> pl.DataFrame:
    """Cast the source to the table's columns (missing optional ones become null)."""
    columns = table_columns(schema, kind)
    missing = [c for c in REQUIRED[kind] if c not in raw.frame.columns
               and not (kind == "events" and c == ITEM_ID and QUERY in raw.frame.columns)]  # searches alone
    if missing:
        searches = f" (or {QUERY!r} in place of item_id, for search events)" if kind == "events" else ""
        raise IngestError(raw.source, f"missing required column(s) {missing}", column=missing[0],
                          expected=f"columns {list(REQUIRED[kind])}{searches}; found {raw.frame.columns}")
    out: dict[str, pl.Series] = {}
    for name, column_type in columns.items():
        if name in raw.frame.columns:
            out[name] = _cast(raw, name, column_type)
        else:
            out[name] = pl.Series(name, [None] * raw.frame.height, dtype=column_type.polars)
    frame = pl.DataFrame(out)
    if kind == "events":
        return _conform_events(raw, frame, schema)
    for name in REQUIRED[kind]:
        _reject_nulls(raw, frame, name)
    frame = frame.with_columns(pl.col(VALID_FROM).fill_null(_EPOCH))
    _reject_duplicate_ids(raw, frame, USER_ID if kind == "users" else ITEM_ID)
    return frame


def _conform_events(raw: RawTable, frame: pl.DataFrame, schema: StoreSchema) -> pl.DataFrame:
    """Events with a ``query`` column: a row with query text and no item is a search event
    (``event_type`` empty or ``search``); every other row needs an item as always. The frame
    returned keeps ``query`` (null on item events), so the writer can route searches."""
    query = _cast(raw, QUERY, ColumnType.string) if QUERY in raw.frame.columns else pl.Series(
        QUERY, [None] * frame.height, dtype=pl.String)
    query = query.str.strip_chars()
    query = pl.select(pl.when(query != "").then(query)).to_series().alias(QUERY)
    is_search = query.is_not_null()
    frame = frame.with_columns(query)
    item_given = frame[ITEM_ID].is_not_null() & (frame[ITEM_ID].str.strip_chars() != "")
    _reject_where(raw, is_search & item_given, ITEM_ID, "a search event (a row with a query) names an item",
                  "an empty item_id beside a query (a search), or no query (an event with an item)")
    typed = frame["event_type"].is_not_null() & (frame["event_type"].str.strip_chars() != "")
    _reject_where(raw, is_search & typed & (frame["event_type"] != SEARCH_EVENT), "event_type",
                  "a row with a query has another event type", f"{SEARCH_EVENT!r} or empty for a search event")
    _reject_where(raw, ~is_search & (frame["event_type"] == SEARCH_EVENT) & ~item_given, QUERY,
                  "a search event has no query text", "the text the user searched for")
    for name in REQUIRED["events"]:
        _reject_nulls(raw, frame, name, only=None if name != ITEM_ID else ~is_search)
    frame = frame.with_columns(
        pl.when(is_search).then(pl.lit(SEARCH_EVENT)).otherwise(
            pl.col("event_type").fill_null(schema.default_event_type)).alias("event_type"),
        pl.col("value").fill_null(1.0),
    )
    _check_event_types(raw, frame, schema, only=~is_search)
    return frame


def _reject_where(raw: RawTable, bad: pl.Series, column: str, problem: str, expected: str) -> None:
    """An :class:`IngestError` at the first row where ``bad`` holds."""
    if bad.any():
        index = int(bad.arg_max())  # type: ignore[arg-type]  # None only for an empty series; it has a True
        raise IngestError(raw.source, problem, row=raw.row_number(index), row_label=raw.row_label,
                          column=column, expected=expected)


def _cast(raw: RawTable, name: str, column_type: ColumnType) -> pl.Series:
    """The column as ``column_type``; a column of a type that cannot hold it, or a value that
    does not convert, is an :class:`IngestError` (the first such value's row)."""
    series = raw.frame[name]
    check_source_type(raw.source, name, series.dtype, column_type, raw.list_separator)
    if is_text(series.dtype):
        series = series.cast(pl.String)  # a categorical's values, not its codes
    if column_type == ColumnType.timestamp:
        result = parse_timestamps(series)
    elif column_type in (ColumnType.string_list, ColumnType.float_list):
        result = _cast_list(series, column_type, raw.list_separator)
    elif column_type == ColumnType.bool and series.dtype == pl.String:
        lowered = series.str.strip_chars().str.to_lowercase()
        result = lowered.replace_strict(_BOOLS, default=None, return_dtype=pl.Boolean)
    elif column_type == ColumnType.bool and series.dtype.is_integer():
        result = pl.select(pl.when(series.is_in([0, 1])).then(series.cast(pl.Boolean))).to_series()
    elif column_type == ColumnType.int and (series.dtype.is_float() or series.dtype.is_decimal()):
        numbers = series.cast(pl.Float64)  # 2.0 is the integer 2; 2.5 is no integer (a cast would cut it to 2)
        result = pl.select(pl.when(numbers.round() == numbers).then(numbers.cast(pl.Int64, strict=False))).to_series()
    elif series.dtype == pl.String and column_type != ColumnType.string:
        result = series.str.strip_chars().cast(column_type.polars, strict=False)
    else:
        result = series.cast(column_type.polars, strict=False)
    _reject_failed_casts(raw, name, series, result, column_type)
    return result.alias(name)


_BOOLS = {"true": True, "t": True, "1": True, "yes": True, "false": False, "f": False, "0": False, "no": False}
_EXPECTED = {
    ColumnType.int: "an integer",
    ColumnType.float: "a number",
    ColumnType.bool: "true/false",
    ColumnType.timestamp: "a timestamp: ISO-8601 (2024-05-01T12:00:00Z) or Unix seconds/milliseconds",
    ColumnType.string: "text",
    ColumnType.string_list: "a list of strings",
    ColumnType.float_list: "a list of numbers",
}


def _reject_failed_casts(raw: RawTable, name: str, before: pl.Series, after: pl.Series,
                         column_type: ColumnType) -> None:
    failed = before.is_not_null() & after.is_null()
    if not failed.any():  # the usual case; skip stripping every string of the column
        return
    if before.dtype == pl.String:
        failed = failed & (before.str.strip_chars() != "")
    if failed.any():
        index = int(failed.arg_max())  # type: ignore[arg-type]  # None only for an empty series; it has a True
        value = before[index]
        shown = value.to_list() if isinstance(value, pl.Series) else value  # a list cell comes as a Series
        raise IngestError(raw.source, f"cannot read {shown!r} as {column_type.value}",
                          row=raw.row_number(index), row_label=raw.row_label, column=name,
                          expected=_EXPECTED[column_type])


def _reject_nulls(raw: RawTable, frame: pl.DataFrame, name: str, only: pl.Series | None = None) -> None:
    """An error at the first row (among ``only``'s, when given) whose ``name`` is empty."""
    nulls = frame[name].is_null()
    if frame[name].dtype == pl.String:
        nulls = nulls | (frame[name].str.strip_chars() == "")
    if only is not None:
        nulls = nulls & only
    if nulls.any():
        index = int(nulls.arg_max())  # type: ignore[arg-type]  # None only for an empty series; it has a True
        raise IngestError(raw.source, "required value is empty", row=raw.row_number(index),
                          row_label=raw.row_label, column=name, expected="a value in every row")


def _reject_duplicate_ids(raw: RawTable, frame: pl.DataFrame, id_column: str) -> None:
    duplicated = frame.select(pl.struct(id_column, VALID_FROM).is_duplicated()).to_series()
    if duplicated.any():
        rows = duplicated.arg_true()
        first_id = frame[id_column][int(rows[0])]
        same = frame.with_row_index("_i").filter(pl.col(id_column) == first_id)["_i"].to_list()
        numbers = [raw.row_number(i) for i in same[:5]]
        raise IngestError(raw.source, f"id {first_id!r} appears more than once ({raw.row_label}s {numbers})",
                          row=numbers[1], row_label=raw.row_label, column=id_column,
                          expected="each id once per file (add a valid_from column for attribute history)")


def _check_event_types(raw: RawTable, frame: pl.DataFrame, schema: StoreSchema, only: pl.Series) -> None:
    """Event types outside the domain's list are refused (searches, ``only``'s complement, aside)."""
    if schema.event_types is None:
        return
    unknown = ~frame["event_type"].is_in(schema.event_types) & only
    if unknown.any():
        index = int(unknown.arg_max())  # type: ignore[arg-type]  # None only for an empty series; it has a True
        raise IngestError(raw.source, f"unknown event type {frame['event_type'][index]!r}",
                          row=raw.row_number(index), row_label=raw.row_label, column="event_type",
                          expected=f"one of {schema.event_types}")


def _cast_list(series: pl.Series, column_type: ColumnType, separator: str) -> pl.Series:
    inner = pl.Float64 if column_type == ColumnType.float_list else pl.String
    if series.dtype == pl.String:
        parts = series.str.strip_chars().str.split(separator).list.eval(
            pl.element().str.strip_chars().filter(pl.element() != "")
        )
        if inner == pl.String:
            return parts
        cast = parts.list.eval(pl.element().cast(pl.Float64, strict=False))
        # a list with an unreadable number becomes null, so it is reported with its row
        broken = cast.list.eval(pl.element().is_null().any()).list.first().fill_null(False)
        return pl.select(pl.when(broken).then(None).otherwise(cast)).to_series()
    if isinstance(series.dtype, pl.Array):
        series = series.cast(pl.List(series.dtype.inner))
    cast = series.cast(pl.List(inner), strict=False)
    if series.dtype == pl.Null:
        return cast
    # an element that does not convert becomes null: null its list, so it is reported with its row
    broken = _null_elements(cast) > _null_elements(series)
    return pl.select(pl.when(broken).then(None).otherwise(cast)).to_series()


def _null_elements(lists: pl.Series) -> pl.Series:
    """How many null elements each list holds."""
    return lists.list.eval(pl.element().is_null().sum()).list.first()


def parse_timestamps(series: pl.Series) -> pl.Series:
    """Timestamps from datetimes, ISO-8601 strings, or Unix seconds/milliseconds/microseconds.

    Numbers are read in the unit their magnitude implies (seconds below 1e11, milliseconds
    below 1e14, else microseconds): unambiguous for any date after 1973. Time zones are converted to UTC and dropped.
    """
    dtype = series.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            series = series.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return series.cast(pl.Datetime("us"))
    if dtype == pl.Date:
        return series.cast(pl.Datetime("us"))
    if dtype.is_numeric():
        return _from_unix(series.cast(pl.Float64))
    text = series.cast(pl.String).str.strip_chars()
    numbers = text.cast(pl.Float64, strict=False)
    from_numbers = _from_unix(numbers)
    needs_iso = numbers.is_null() & text.is_not_null() & (text != "")
    if not needs_iso.any():
        return from_numbers
    con = duckdb.connect()
    try:
        con.register("raw_ts", pl.DataFrame({"t": text}))
        parsed = con.sql(
            "SELECT (try_cast(t AS TIMESTAMPTZ) AT TIME ZONE 'UTC')::TIMESTAMP AS t FROM raw_ts"
        ).pl()["t"].cast(pl.Datetime("us"))
    finally:
        con.close()
    return pl.select(pl.when(numbers.is_not_null()).then(from_numbers).otherwise(parsed)).to_series()


def _from_unix(numbers: pl.Series) -> pl.Series:
    """Unix time in the unit its magnitude implies: seconds below 1e11 (until year 5138),
    milliseconds below 1e14, microseconds above."""
    magnitude = numbers.abs()
    scale = (
        pl.when(magnitude >= 1e14).then(1.0).when(magnitude >= 1e11).then(1e3).otherwise(1e6)
    )
    scaled = pl.select((numbers * scale).round()).to_series()
    # NaN, infinity or a time past the year 294247 becomes null, reported with its row
    return scaled.cast(pl.Int64, strict=False).cast(pl.Datetime("us"))
