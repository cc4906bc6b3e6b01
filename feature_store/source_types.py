"""Which column types of a source (a Parquet file, a frame) each declared column type accepts.

Text sources hold only strings, parsed value by value; typed sources (Parquet, polars, Arrow)
can hold a column no value of which fits, such as a list or struct where a timestamp belongs.
Such a column is refused as a whole, naming its type and the types that would do, before
any cast: a cast across such types either fails inside polars or DuckDB or, worse, succeeds
with nonsense (a struct's text as an id, a date's day count as a price).
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from recengine.feature_store.errors import IngestError
from recengine.feature_store.schema import ColumnType


def is_text(dtype: pl.DataType) -> bool:
    """Strings, categoricals and enums: text, parsed value by value."""
    return isinstance(dtype, (pl.String, pl.Categorical, pl.Enum))


def _is_number(dtype: pl.DataType) -> bool:
    return dtype.is_numeric()  # integers, floats and decimals


_SCALARS: dict[ColumnType, tuple[Callable[[pl.DataType], bool], str]] = {
    # integers are fine as ids and text; a float or date is not an id ('1.0' is not user '1')
    ColumnType.string: (lambda d: is_text(d) or d.is_integer(), "a string (or integer) column"),
    ColumnType.int: (lambda d: is_text(d) or _is_number(d), "an integer column (or whole numbers, or strings of them)"),
    ColumnType.float: (lambda d: is_text(d) or _is_number(d), "a numeric column (or strings of numbers)"),
    ColumnType.bool: (lambda d: is_text(d) or d == pl.Boolean or d.is_integer(),
                      "a boolean column (or 0/1, or strings true/false)"),
    ColumnType.timestamp: (lambda d: is_text(d) or _is_number(d) or isinstance(d, (pl.Datetime, pl.Date)),
                           "a datetime or date column, Unix time as numbers, or ISO-8601 strings"),
}
_ELEMENTS: dict[ColumnType, tuple[Callable[[pl.DataType], bool], str]] = {
    ColumnType.string_list: (lambda d: is_text(d) or d.is_integer(), "strings (or integers)"),
    ColumnType.float_list: (lambda d: is_text(d) or _is_number(d), "numbers"),
}


def accepts(column_type: ColumnType, dtype: pl.DataType) -> bool:
    """Whether a source column of ``dtype`` can hold ``column_type`` values (an all-null one always can)."""
    if dtype == pl.Null:
        return True
    if column_type in _ELEMENTS:
        if is_text(dtype):
            return True  # split on the source's list separator
        inner = dtype.inner if isinstance(dtype, (pl.List, pl.Array)) else None
        return isinstance(inner, pl.DataType) and (inner == pl.Null or _ELEMENTS[column_type][0](inner))
    return _SCALARS[column_type][0](dtype)


def accepted(column_type: ColumnType, list_separator: str) -> str:
    """The source column types ``column_type`` accepts, in words."""
    if column_type in _ELEMENTS:
        return f"a list column of {_ELEMENTS[column_type][1]}, or strings separated by {list_separator!r}"
    return _SCALARS[column_type][1]


def check_source_type(source: str, name: str, dtype: pl.DataType, column_type: ColumnType,
                      list_separator: str = "|") -> None:
    """Raise :class:`IngestError` when column ``name`` of ``source`` has a type no
    ``column_type`` value can come from."""
    if not accepts(column_type, dtype):
        raise IngestError(source, f"has type {dtype}, which cannot be read as {column_type.value}", column=name,
                          expected=accepted(column_type, list_separator))
