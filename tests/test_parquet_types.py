"""A Parquet column of the wrong type is an IngestError naming the file, the column, its type and
what was expected (and the row, when one value does not convert), never a raw polars or DuckDB
error; the store is left as it was."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from recengine.feature_store import FeatureStore, StoreSchema
from recengine.feature_store.errors import IngestError
from recengine.feature_store.schema import ColumnType
from tests.store_contents import assert_same_contents, contents

EVENTS = {"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "ts": [1_700_000_000, 1_700_000_001]}
ITEMS = {"item_id": ["i3", "i4"]}
USERS = {"user_id": ["u3", "u4"]}
TIMESTAMP = "a datetime or date column, Unix time as numbers, or ISO-8601 strings"
STRING = "a string (or integer) column"
NUMBER = "a numeric column (or strings of numbers)"


@pytest.fixture
def fs(store_path: Path):
    schema = StoreSchema(name="shop", open=False, user_columns={"age": ColumnType.int},
                         item_columns={"category": ColumnType.string, "price": ColumnType.float,
                                       "tags": ColumnType.string_list, "embedding": ColumnType.float_list,
                                       "active": ColumnType.bool})
    with FeatureStore(store_path, schema=schema) as store:
        store.ingest(pl.DataFrame({"user_id": ["u1", "u2"], "age": [20, 30]}))
        store.ingest(pl.DataFrame({"item_id": ["i1", "i2"], "category": ["a", "b"], "price": [1.0, 2.0]}))
        yield store


def _parquet(tmp_path: Path, columns: dict[str, Any]) -> Path:
    path = tmp_path / "source.parquet"
    pl.DataFrame(columns).write_parquet(path)
    return path


def _rejects(fs: FeatureStore, path: Path, kind: str, *fragments: str) -> IngestError:
    before = contents(fs)
    with pytest.raises(IngestError) as caught:
        fs.ingest(path, kind)
    message = str(caught.value)
    for fragment in (str(path), *fragments):
        assert fragment in message, message
    assert_same_contents(before, contents(fs))
    return caught.value


@pytest.mark.parametrize("kind, columns, column, has_type, expected", [
    ("events", {**EVENTS, "ts": [[1], [2]]}, "ts", "List(Int64)", TIMESTAMP),
    ("events", {**EVENTS, "ts": [{"s": 1}, {"s": 2}]}, "ts", "Struct({'s': Int64})", TIMESTAMP),
    ("events", {**EVENTS, "ts": [True, False]}, "ts", "Boolean", TIMESTAMP),
    ("events", {**EVENTS, "ts": [time(12), time(13)]}, "ts", "Time", TIMESTAMP),
    ("events", {**EVENTS, "ts": [timedelta(1), timedelta(2)]}, "ts", "Duration", TIMESTAMP),
    ("events", {**EVENTS, "user_id": [1.0, 2.5]}, "user_id", "Float64", STRING),
    ("events", {**EVENTS, "user_id": [["u1"], ["u2"]]}, "user_id", "List(String)", STRING),
    ("events", {**EVENTS, "item_id": [{"id": "i1"}, {"id": "i2"}]}, "item_id", "Struct", STRING),
    ("events", {**EVENTS, "value": [[1.0], [2.0]]}, "value", "List(Float64)", NUMBER),
    ("events", {**EVENTS, "value": [{"v": 1.0}, {"v": 2.0}]}, "value", "Struct", NUMBER),
    ("events", {**EVENTS, "value": [True, False]}, "value", "Boolean", NUMBER),
    ("events", {**EVENTS, "event_type": [["click"], ["buy"]]}, "event_type", "List(String)", STRING),
    ("items", {**ITEMS, "price": [date(2024, 1, 1), date(2024, 1, 2)]}, "price", "Date", NUMBER),
    ("items", {**ITEMS, "price": [{"eur": 1.0}, {"eur": 2.0}]}, "price", "Struct", NUMBER),
    ("items", {**ITEMS, "category": [["a"], ["b"]]}, "category", "List(String)", STRING),
    ("items", {**ITEMS, "title": [{"en": "a"}, {"en": "b"}]}, "title", "Struct", STRING),
    ("items", {**ITEMS, "created_at": [[1], [2]]}, "created_at", "List(Int64)", TIMESTAMP),
    ("items", {**ITEMS, "tags": [1, 2]}, "tags", "Int64", "a list column of strings (or integers)"),
    ("items", {**ITEMS, "tags": [[["a"]], [["b"]]]}, "tags", "List(List(String))", "a list column of strings"),
    ("items", {**ITEMS, "embedding": [0.5, 1.5]}, "embedding", "Float64", "a list column of numbers"),
    ("items", {**ITEMS, "embedding": [[{"x": 1.0}], [{"x": 2.0}]]}, "embedding", "List(Struct", "of numbers"),
    ("items", {**ITEMS, "active": [0.5, 1.0]}, "active", "Float64", "a boolean column"),
    ("items", {"item_id": [3.0, 4.5]}, "item_id", "Float64", STRING),
    ("users", {**USERS, "age": [date(2024, 1, 1), date(2024, 1, 2)]}, "age", "Date", "an integer column"),
    ("users", {**USERS, "age": [[20], [30]]}, "age", "List(Int64)", "an integer column"),
    ("users", {**USERS, "age": [True, False]}, "age", "Boolean", "an integer column"),
])
def test_a_column_of_the_wrong_type(fs, tmp_path, kind, columns, column, has_type, expected) -> None:
    error = _rejects(fs, _parquet(tmp_path, columns), kind, f"column {column!r}", f"has type {has_type}", expected)
    assert error.column == column and error.row is None  # the whole column is refused, before any value


@pytest.mark.parametrize("kind, columns, column, value", [
    ("events", {**EVENTS, "value": ["1.5", "lots"]}, "value", "'lots' as float"),
    ("events", {**EVENTS, "ts": [1.7e9, float("nan")]}, "ts", "nan as timestamp"),
    ("events", {**EVENTS, "ts": [1.7e9, float("inf")]}, "ts", "inf as timestamp"),
    ("events", {**EVENTS, "ts": [1.7e9, 1e30]}, "ts", "1e+30 as timestamp"),  # past any date DuckDB holds
    ("events", {**EVENTS, "ts": ["2024-01-01", "9" * 23]}, "ts", f"'{'9' * 23}' as timestamp"),
    ("events", {**EVENTS, "ts": ["2024-01-01", "yesterday"]}, "ts", "'yesterday' as timestamp"),
    ("users", {**USERS, "age": [20.0, 30.5]}, "age", "30.5 as int"),  # not cut to 30
    ("items", {**ITEMS, "active": [1, 5]}, "active", "5 as bool"),  # not read as true
    ("items", {**ITEMS, "embedding": [["1.0"], ["x"]]}, "embedding", "['x'] as float_list"),  # not [null]
    ("items", {**ITEMS, "price": ["1", "cheap"]}, "price", "'cheap' as float"),
])
def test_a_value_that_does_not_convert_names_its_row(fs, tmp_path, kind, columns, column, value) -> None:
    error = _rejects(fs, _parquet(tmp_path, columns), kind, "row 2", f"column {column!r}", f"cannot read {value}")
    assert (error.row, error.column) == (2, column)


def test_types_that_do_convert_are_read_by_value(fs, tmp_path) -> None:
    """Integer ids, whole floats in an int column, 0/1 in a bool column, categoricals (their
    values, not their codes) and lists of integers as string lists."""
    users = pl.DataFrame({"user_id": pl.Series([7, 8]), "age": [41.0, 42.0]})
    fs.ingest(_parquet(tmp_path, users.to_dict()), "users")
    items = pl.DataFrame({"item_id": ["i3", "i4"], "category": pl.Series(["z", "y"], dtype=pl.Categorical),
                          "active": pl.Series([1, 0], dtype=pl.UInt8), "tags": [[1, 2], [3]]})
    fs.ingest(_parquet(tmp_path, items.to_dict()), "items")
    assert fs.sql("SELECT user_id, age FROM users WHERE age > 40 ORDER BY user_id").rows() == [("7", 41), ("8", 42)]
    assert fs.sql("SELECT item_id, category, active, tags FROM items WHERE item_id > 'i2' ORDER BY item_id").rows() \
        == [("i3", "z", True, ["1", "2"]), ("i4", "y", False, ["3"])]


def test_an_open_store_checks_later_files_against_the_types_the_first_declared(tmp_path) -> None:
    with FeatureStore(tmp_path / "open.duckdb") as fs:
        fs.ingest(_parquet(tmp_path, {"item_id": ["i1"], "score": [0.5]}), "items")
        _rejects(fs, _parquet(tmp_path, {"item_id": ["i2"], "score": [[0.5]]}), "items",
                 "column 'score'", "has type List(Float64)", "cannot be read as float", NUMBER)
        _rejects(fs, _parquet(tmp_path, {"item_id": ["i2"], "meta": [{"k": 1}]}), "items",
                 "column 'meta'", "has type Struct")
