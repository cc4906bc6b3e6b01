"""Every bad input gets an error naming file, line/row and column, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recengine.feature_store import FeatureStore, StoreSchema
from recengine.feature_store.errors import IngestError
from recengine.feature_store.schema import ColumnType
from tests.store_contents import assert_same_contents, contents


@pytest.fixture
def fs(store_path: Path):
    schema = StoreSchema(name="shop", open=False, user_columns={"age": ColumnType.int},
                         item_columns={"category": ColumnType.string, "price": ColumnType.float})
    with FeatureStore(store_path, schema=schema) as store:
        store.ingest(pl.DataFrame({"user_id": ["u1", "u2"], "age": [20, 30]}))
        store.ingest(pl.DataFrame({"item_id": ["i1", "i2"], "category": ["a", "b"], "price": [1.0, 2.0]}))
        yield store


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _rejects(fs: FeatureStore, path: Path, *fragments: str, kind: str | None = None) -> IngestError:
    before = contents(fs)
    with pytest.raises(IngestError) as caught:
        fs.ingest(path, kind)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    assert_same_contents(before, contents(fs))  # a failed ingest leaves every table as it was
    return caught.value


def test_ragged_csv_row(fs, tmp_path):
    path = _write(tmp_path, "events.csv", "user_id,item_id,ts\nu1,i1,1700000000\nu2,i2,1700000001,extra\n")
    error = _rejects(fs, path, "events.csv", "line 3", "3 fields, as in the header")
    assert error.row == 3


def test_short_csv_row(fs, tmp_path):
    path = _write(tmp_path, "events.csv", "user_id,item_id,ts\nu1,i1,1700000000\nu2,i2\n")
    _rejects(fs, path, "line 3", "has 2 fields")


def test_wrong_type_names_line_and_column(fs, tmp_path):
    path = _write(tmp_path, "items.csv", "item_id,category,price\ni3,a,9.5\ni4,b,cheap\n")
    error = _rejects(fs, path, "line 3", "column 'price'", "cannot read 'cheap' as float", "expected a number")
    assert (error.row, error.column) == (3, "price")


def test_missing_required_column(fs, tmp_path):
    path = _write(tmp_path, "events.csv", "user_id,item_id,value\nu1,i1,1\n")
    _rejects(fs, path, "events.csv", "no timestamp column", "missing ['ts']")  # inferred: not events
    _rejects(fs, path, "missing required column(s) ['ts']", kind="events")  # named: events lacking ts


def test_empty_file(fs, tmp_path):
    _rejects(fs, _write(tmp_path, "events.csv", ""), "events.csv", "the file is empty")


def test_header_only(fs, tmp_path):
    _rejects(fs, _write(tmp_path, "events.csv", "user_id,item_id,ts\n"), "has a header but no rows")


def test_non_utf8_bytes(fs, tmp_path):
    path = _write(tmp_path, "items.csv", b"item_id,category,price\ni3,caf\xe9,1.0\n")
    _rejects(fs, path, "line 2", "not valid UTF-8", "0xe9")


def test_unparseable_timestamp(fs, tmp_path):
    path = _write(tmp_path, "events.csv", "user_id,item_id,ts\nu1,i1,2024-01-01T10:00:00\nu2,i2,yesterday\n")
    _rejects(fs, path, "line 3", "column 'ts'", "'yesterday'", "ISO-8601")


def test_duplicate_ids_within_a_file(fs, tmp_path):
    path = _write(tmp_path, "users.csv", "user_id,age\nu7,1\nu8,2\nu7,3\n")
    _rejects(fs, path, "id 'u7' appears more than once (lines [2, 4])", "column 'user_id'")


def test_empty_required_value(fs, tmp_path):
    path = _write(tmp_path, "events.csv", "user_id,item_id,ts\nu1,,1700000000\n")
    _rejects(fs, path, "line 2", "column 'item_id'", "required value is empty")


def test_undeclared_column_in_domain_store(fs, tmp_path):
    path = _write(tmp_path, "users.csv", "user_id,age,shoe_size\nu9,3,44\n")
    _rejects(fs, path, "['shoe_size'] are not declared for users in the 'shop' schema")


def test_unknown_kind(fs, tmp_path):
    _rejects(fs, _write(tmp_path, "x.csv", "a,b\n1,2\n"), "cannot tell whether this holds users, items or events")


def test_unsupported_suffix(fs, tmp_path):
    _rejects(fs, _write(tmp_path, "x.xlsx", "whatever"), "unsupported file type '.xlsx'")


def test_recbole_header_without_type(tmp_path, store_path):
    path = _write(tmp_path, "d.inter", "user_id\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    with FeatureStore(store_path) as fs, pytest.raises(IngestError, match="header field 'user_id' has no type"):
        fs.ingest(path)


def test_recbole_bad_float(tmp_path, store_path):
    path = _write(tmp_path, "d.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t3\tsoon\n")
    with FeatureStore(store_path) as fs, pytest.raises(IngestError, match=r"line 3, column 'ts'"):
        fs.ingest(path, create_missing=True)


def test_bad_parquet_row_is_numbered(fs, tmp_path):
    path = tmp_path / "items.parquet"
    pl.DataFrame({"item_id": ["i5", "i6"], "price": ["1.5", "free"]}).write_parquet(path)
    _rejects(fs, path, "row 2", "column 'price'")
