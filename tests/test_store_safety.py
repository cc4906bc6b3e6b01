"""The store never silently rewrites what it holds: strict kind inference, explicit schema
changes, partial updates. Every refusal leaves every table exactly as it was."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from recengine.feature_store import FeatureStore
from recengine.feature_store.errors import IngestError
from tests.store_contents import assert_same_contents, contents


@pytest.fixture
def fs(store_path: Path, small_frames):
    """An open-schema store holding the small users, items and events."""
    with FeatureStore(store_path) as store:
        for kind in ("users", "items", "events"):
            store.ingest(small_frames[kind])
        yield store


def _csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _refused(fs: FeatureStore, source, *fragments: str, **options) -> IngestError:
    """Ingest must raise naming every fragment, and leave schema and every table as they were."""
    before, schema = contents(fs), fs.schema
    with pytest.raises(IngestError) as caught:
        fs.ingest(source, **options)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    assert fs.schema == schema
    assert_same_contents(before, contents(fs))
    return caught.value


def _user(fs: FeatureStore, user_id: str) -> dict:
    return fs.latest("users").filter(pl.col("user_id") == user_id).row(0, named=True)


# -- strict kind inference ------------------------------------------------------------------
def test_events_file_without_item_column_is_refused_not_taken_as_users(fs, tmp_path):
    path = _csv(tmp_path, "clicks.csv", "user_id,ts,value\nu1,1700000000,1\n")
    error = _refused(fs, path, "clicks.csv", "user_id and a timestamp column 'ts', like events, but no item_id",
                     "missing ['item_id']", "--kind")
    assert error.source == str(path)


def test_ids_without_timestamp_are_refused_naming_ts(fs, tmp_path):
    path = _csv(tmp_path, "pairs.csv", "user_id,item_id,value\nu1,i1,1\n")
    _refused(fs, path, "pairs.csv", "no timestamp column", "missing ['ts']", "kind= (--kind)")


def test_item_with_timestamp_alias_but_no_user_is_refused(fs, tmp_path):
    path = _csv(tmp_path, "plays.csv", "item_id,timestamp\ni1,1700000000\n")
    _refused(fs, path, "plays.csv", "item_id and a timestamp column 'timestamp'", "missing ['user_id']")


def test_no_id_column_is_refused(fs, tmp_path):
    _refused(fs, _csv(tmp_path, "x.csv", "a,b\n1,2\n"), "x.csv", "neither a user_id nor an item_id",
             "missing ['user_id', 'item_id']")


def test_each_clean_shape_goes_to_its_table(store_path, tmp_path):
    users = _csv(tmp_path, "people.csv", "user_id,age\nu1,30\n")
    items = _csv(tmp_path, "things.csv", "item_id,title\ni1,Hat\n")
    events = _csv(tmp_path, "log.csv", "user_id,item_id,time\nu1,i1,1700000000\n")
    with FeatureStore(store_path) as store:
        kinds = [r.kind for r in store.ingest_paths([events, items, users])]
        assert kinds == ["users", "items", "events"]
        stored = store.sql("SELECT user_id, item_id, ts FROM events").rows()
        assert stored == [("u1", "i1", datetime(2023, 11, 14, 22, 13, 20))]


def test_kind_makes_an_ambiguous_file_explicit(fs, tmp_path):
    """A user_id file with a timestamp is refused by inference, but taken as users when named so
    (its new column still needs allow_new_columns, since the users table holds rows)."""
    path = _csv(tmp_path, "signups.csv", "user_id,time\nu1,2024-01-01\n")
    _refused(fs, path, "like events, but no item_id")
    _refused(fs, path, "would add column(s) ['time'] to the users table", kind="users")
    fs.ingest(path, kind="users", allow_new_columns=True)
    assert _user(fs, "u1") == {"user_id": "u1", "age": 30, "city": "a", "time": "2024-01-01",
                               "valid_from": datetime(1970, 1, 1)}


def test_recbole_suffixes_still_name_the_table(store_path, tmp_path):
    users = _csv(tmp_path, "d.user", "user_id:token\tage:float\n1\t20\n")
    items = _csv(tmp_path, "d.item", "item_id:token\tname:token\n7\tHat\n")
    inter = _csv(tmp_path, "d.inter",
                 "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t7\t4\t1700000000\n")
    with FeatureStore(store_path) as store:
        assert [r.kind for r in store.ingest_paths([inter, users, items])] == ["users", "items", "events"]
        assert store.latest("items")["title"].to_list() == ["Hat"]
        assert store.sql("SELECT user_id, item_id, value, event_type FROM events").rows() == [("1", "7", 4.0, "rating")]
        before = contents(store)
        with pytest.raises(IngestError, match=r"a RecBole \.inter file holds events, not users"):
            store.ingest(inter, kind="users")
        assert_same_contents(before, contents(store))


# -- new columns ----------------------------------------------------------------------------
def test_new_column_on_a_filled_table_needs_allow_new_columns(fs, tmp_path):
    path = _csv(tmp_path, "users2.csv", "user_id,age,shoe_size\nu4,20,44\n")
    error = _refused(fs, path, "users2.csv", "would add column(s) ['shoe_size'] to the users table",
                     "which already holds rows", "allow_new_columns=True (--allow-new-columns)")
    assert error.column == "shoe_size"
    fs.ingest(path, allow_new_columns=True)
    assert fs.schema.user_columns["shoe_size"].value == "int"
    assert _user(fs, "u4")["shoe_size"] == 44
    assert _user(fs, "u1") == {"user_id": "u1", "age": 30, "city": "a", "shoe_size": None,
                               "valid_from": datetime(1970, 1, 1)}


def test_a_refused_new_column_in_a_multi_file_ingest_writes_nothing(fs, tmp_path):
    items = _csv(tmp_path, "items.csv", "item_id,title\ni9,Cap\n")
    users = _csv(tmp_path, "users.csv", "user_id,height\nu9,180\n")
    before = contents(fs)
    with pytest.raises(IngestError, match=r"would add column\(s\) \['height'\]"):
        fs.ingest_paths([items, users])
    assert_same_contents(before, contents(fs))
    assert "height" not in fs.schema.user_columns


def test_first_ingest_into_an_empty_table_declares_columns_freely(store_path, tmp_path, small_frames):
    """Two files of one table in one call may both declare columns (each column is added once)."""
    first = _csv(tmp_path, "a.csv", "user_id,age\nu1,30\n")
    second = _csv(tmp_path, "b.csv", "user_id,age,city\nu2,40,b\n")
    with FeatureStore(store_path) as store:
        store.ingest(small_frames["items"])  # another table's rows do not count
        store.ingest_paths([first, second])
        assert {k: v.value for k, v in store.schema.user_columns.items()} == {"age": "int", "city": "string"}
        assert store.latest("users").select("user_id", "age", "city").rows() == [("u1", 30, None), ("u2", 40, "b")]


# -- partial updates ------------------------------------------------------------------------
def test_partial_update_keeps_unnamed_and_null_attributes(fs, tmp_path):
    fs.ingest(pl.DataFrame({"user_id": ["u1"], "age": [31]}))  # no city column
    assert (_user(fs, "u1")["age"], _user(fs, "u1")["city"]) == (31, "a")
    fs.ingest(_csv(tmp_path, "u.csv", "user_id,age,city\nu1,,b\nu2,41,\n"))  # empty fields are nulls
    assert (_user(fs, "u1")["age"], _user(fs, "u1")["city"]) == (31, "b")
    assert (_user(fs, "u2")["age"], _user(fs, "u2")["city"]) == (41, "b")
    assert fs.sql("SELECT count(*) AS n FROM users")["n"].item() == 3  # updated in place, no new versions
    assert _user(fs, "u3") == {"user_id": "u3", "age": 50, "city": "c", "valid_from": datetime(1970, 1, 1)}


def test_reingest_of_a_partial_row_changes_nothing(fs):
    before = contents(fs)
    result = fs.ingest(pl.DataFrame({"user_id": ["u2"], "city": ["b"]}))
    assert result.rows_added == 0
    after = contents(fs)
    for table in ("users", "items", "events"):  # only the ingest log records it
        assert after[table].equals(before[table]), table


def test_replace_writes_the_row_as_given(fs):
    result = fs.ingest(pl.DataFrame({"user_id": ["u1"], "age": [None]}, schema={"user_id": pl.String, "age": pl.Int64}),
                       replace=True)
    assert result.rows_added == 1
    assert _user(fs, "u1") == {"user_id": "u1", "age": None, "city": None, "valid_from": datetime(1970, 1, 1)}


def test_new_version_inherits_from_the_version_it_follows(fs):
    t1, t2 = datetime(2024, 1, 1), datetime(2024, 6, 1)
    fs.ingest(pl.DataFrame({"user_id": ["u1"], "city": ["z"], "valid_from": [t1]}))
    fs.ingest(pl.DataFrame({"user_id": ["u1"], "age": [32], "valid_from": [t2]}))
    versions = fs.sql("SELECT age, city, valid_from FROM users WHERE user_id = 'u1' ORDER BY valid_from").rows()
    assert versions == [(30, "a", datetime(1970, 1, 1)), (30, "z", t1), (32, "z", t2)]


def test_items_partial_update_keeps_title(fs):
    fs.ingest(pl.DataFrame({"item_id": ["i1"], "category": ["boots"]}))
    item = fs.latest("items").filter(pl.col("item_id") == "i1").row(0, named=True)
    assert (item["title"], item["category"]) == ("Red shoe", "boots")
