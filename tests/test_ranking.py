"""``recengine.ranking``: the helpers rankers (built-in and plugins) share, on hand-made cells.

The catalogue below has five items; row 0 is the padding item. Expectations are worked out
by hand from the rule "a list, set or array cell holds its elements; anything else, a tuple
included, is one value; None and NaN are no value".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from recengine.components import Catalog
from recengine.errors import RequestError
from recengine.ranking import (
    as_utc,
    cell_values,
    code_membership,
    column_matches,
    finite_range,
    first_matches,
    item_column,
    list_membership,
    min_max_normalise,
)

NAN = float("nan")


def catalog() -> Catalog:
    def column(*cells: object) -> np.ndarray:
        values = np.empty(len(cells), dtype=object)
        values[:] = list(cells)  # element by element: a list cell stays one cell
        return values

    return Catalog(
        item_ids=np.array(["", "i1", "i2", "i3", "i4", "i5"], dtype=object),
        columns={
            "category": np.array(["", "a", "b", "a", "c", "b"]),  # unicode dtype: the np.isin path
            "brand": column(None, "acme", None, "zeta", NAN, "acme"),  # strings with missing values
            "genres": column([], ["drama", "comedy"], ["drama"], [], np.array(["comedy"]), {"horror", None}),
            "pair": column(None, ("a", "b"), ["a", "x"], "a", ("b",), "b"),  # tuples are one value
            "price": np.array([0.0, 10.0, 20.0, NAN, 40.0, 50.0]),
        },
        vectors=np.zeros((6, 0), dtype=np.float32),
        popularity=np.zeros(6),
    )


ITEMS = np.arange(1, 6)


def matches(column: str, allowed: object) -> list[bool]:
    return column_matches(catalog(), column, ITEMS, allowed).tolist()


# --- cell_values --------------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "values"), [
    ("drama", ("drama",)),
    (3, (3,)),
    (("a", "b"), (("a", "b"),)),  # a tuple is one value
    (["a", "b"], ("a", "b")),
    ({"a"}, ("a",)),
    (np.array([1, 2]), (1, 2)),
    (None, ()),
    (NAN, ()),
    (np.datetime64("NaT"), ()),
    (["a", None, NAN], ("a",)),  # missing elements of a list are no value either
    ([], ()),
])
def test_cell_values_follow_the_list_value_rule(cell: object, values: tuple) -> None:
    assert cell_values(cell) == values


# --- column_matches -----------------------------------------------------------------------


def test_column_matches_single_valued_columns() -> None:
    assert matches("category", ["a", "c"]) == [True, False, True, True, False]
    assert matches("category", "b") == [False, True, False, False, True]  # one value: a list of one
    assert matches("price", [10.0, 40]) == [True, False, False, True, False]
    assert matches("brand", ["acme"]) == [True, False, False, False, True]


def test_column_matches_list_cells_on_any_element() -> None:
    assert matches("genres", ["comedy"]) == [True, False, False, True, False]  # list and array cells
    assert matches("genres", ["horror", "drama"]) == [True, True, False, False, True]  # a set cell


def test_column_matches_a_tuple_cell_as_one_value() -> None:
    assert matches("pair", ["a"]) == [False, True, True, False, False]  # the list ["a", "x"] and "a"
    assert matches("pair", [("a", "b")]) == [True, False, False, False, False]  # the whole tuple
    assert matches("pair", ["b"]) == [False, False, False, False, True]  # ("b",) is not "b"


def test_column_matches_never_matches_missing_values() -> None:
    assert matches("brand", [None]) == [False] * 5
    assert matches("brand", [None, "zeta"]) == [False, False, True, False, False]
    assert matches("price", [NAN]) == [False] * 5
    assert matches("genres", [None]) == [False] * 5  # the set cell's None is no value


def test_column_matches_an_empty_list_matches_nothing_and_unknown_columns_fail() -> None:
    assert matches("category", []) == [False] * 5
    with pytest.raises(RequestError, match="filter: unknown item column 'colour'; known columns: brand, category"):
        matches("colour", ["red"])


def test_item_column_names_who_needs_it() -> None:
    assert item_column(catalog(), "category", "mine").tolist() == ["", "a", "b", "a", "c", "b"]
    with pytest.raises(RequestError, match="^my-ranker: unknown item column 'x'; known columns: brand, "):
        item_column(catalog(), "x", "my-ranker")
    empty = Catalog(item_ids=np.array([""], dtype=object), columns={}, vectors=np.zeros((1, 0)),
                    popularity=np.zeros(1))
    with pytest.raises(RequestError, match="known columns: none"):
        item_column(empty, "x", "my-ranker")


# --- first_matches ------------------------------------------------------------------------


def test_first_matches_gives_the_matching_value_per_cell() -> None:
    cells = catalog().columns["genres"][ITEMS].tolist()
    assert first_matches(cells, ["comedy", "drama"]) == ["drama", "drama", None, "comedy", None]  # cell order
    assert first_matches(cells, []) == [None] * 5
    assert first_matches([("a", "b"), "a", None, NAN], ["a", None]) == [None, "a", None, None]
    assert first_matches([("a", "b")], [("a", "b")]) == [("a", "b")]


# --- membership ---------------------------------------------------------------------------


def test_list_membership_marks_every_value_of_each_cell() -> None:
    genres = catalog().columns["genres"]
    # columns in order of first appearance: drama, comedy
    assert list_membership(genres[[1, 2, 4, 3]]).tolist() == [
        [True, True], [True, False], [False, True], [False, False]]
    assert list_membership(genres[[5]]).tolist() == [[True]]  # {"horror", None}: None is no value
    pair = list_membership(catalog().columns["pair"][[1, 2, 3, 5]])  # ("a", "b"), ["a", "x"], "a", "b"
    assert pair.tolist() == [[True, False, False, False], [False, True, True, False],
                             [False, True, False, False], [False, False, False, True]]
    assert list_membership(np.array([None, NAN], dtype=object)).shape == (2, 0)


def test_code_membership_marks_no_value_for_missing_codes() -> None:
    # columns are the sorted codes present (-1, 0, 2); the -1 column stays all False
    assert code_membership(np.array([2, 0, -1, 2])).tolist() == [
        [False, False, True], [False, True, False], [False, False, False], [False, False, True]]
    brands = catalog().codes("brand")[ITEMS]  # acme, None, zeta, NaN, acme → 0, -1, 1, -1, 0
    assert code_membership(brands).sum(axis=0).tolist() == [0, 2, 1]


# --- scores ---------------------------------------------------------------------------------


def test_finite_range_skips_nan_and_infinities() -> None:
    assert finite_range(np.array([3.0, -np.inf, 1.0, NAN, np.inf])) == (1.0, 3.0)
    assert finite_range(np.array([np.nan, np.inf])) is None
    assert finite_range(np.zeros(0)) is None


def test_min_max_normalise_by_hand() -> None:
    np.testing.assert_allclose(min_max_normalise(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(min_max_normalise(np.array([-3.0, -1.0], dtype=np.float32)), [0.0, 1.0])
    np.testing.assert_allclose(min_max_normalise(np.array([np.nan, 1.0, np.inf, 3.0])), [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(min_max_normalise(np.array([-np.inf, np.inf, np.nan])), [0.0, 1.0, 0.0])
    assert min_max_normalise(np.zeros(0)).shape == (0,)


def test_min_max_normalise_constant_scores_are_all_one() -> None:
    np.testing.assert_array_equal(min_max_normalise(np.array([5.0, 5.0, 5.0])), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(min_max_normalise(np.array([7.0, np.nan])), [1.0, 1.0])
    assert min_max_normalise(np.array([1, 2])).dtype == np.float64


# --- time -----------------------------------------------------------------------------------


def test_as_utc_takes_naive_times_as_utc() -> None:
    assert as_utc(datetime(2024, 3, 1, 12)) == datetime(2024, 3, 1, 12, tzinfo=UTC)
    paris = timezone(timedelta(hours=1))
    converted = as_utc(datetime(2024, 3, 1, 12, tzinfo=paris))
    assert converted.tzinfo == UTC and converted.hour == 11
