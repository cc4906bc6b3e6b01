"""The ranker author's toolkit: the helpers recengine's built-in rankers are written with.

A third-party ranker imports these (``from recengine.ranking import column_matches``) and so
reads item attributes, matches request filters, groups items and rescales scores exactly as
``exclude-seen``, ``diversity``, ``freshness`` and ``popularity-fallback`` do: a filter or a
business rule then means the same in a plugin as in the engine.

- Item columns: :func:`item_column` (a column, or an error naming the known ones),
  :func:`cell_values` (the values one cell holds), :func:`check_filter` (whether a filter can
  apply to a column), :func:`column_matches` (a filter mask) and :func:`first_matches`
  (which wanted value each cell holds, for reasons).
- Grouping: :func:`code_membership` and :func:`list_membership` (item × value matrices).
- Scores: :func:`finite_range` and :func:`min_max_normalise`.
- Time: :func:`as_utc` (naive request times are UTC).

The one rule for a cell holding several values (genres) is
:data:`recengine.components.LIST_VALUE_TYPES`: a list, set or numpy array holds its
elements; anything else, a tuple included, is one value. A missing value (None, NaN) is no
value: it never matches and belongs to no group.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recengine.components import LIST_VALUE_TYPES, Catalog
from recengine.errors import RequestError

__all__ = ["as_utc", "cell_values", "check_filter", "code_membership", "column_matches", "finite_range",
           "first_matches", "item_column", "list_membership", "min_max_normalise"]

# cells sampled to tell which kind of value an object column holds (a bound on the cost)
_KIND_SAMPLE = 64


def item_column(catalog: Catalog, name: str, needed_by: str) -> np.ndarray:
    """The catalogue column ``name`` ([N+1], by item index); an unknown name raises
    :class:`~recengine.errors.RequestError` (a ``ValueError``; HTTP 422) naming ``needed_by``
    and the known columns."""
    if name not in catalog.columns:
        known = ", ".join(sorted(catalog.columns)) or "none"
        raise RequestError(f"{needed_by}: unknown item column {name!r}; known columns: {known}")
    return catalog.columns[name]


def cell_values(cell: Any) -> tuple[Any, ...]:
    """The values one cell holds: a list/set/array's elements, a missing value none, any
    other value (a tuple too) itself alone. Missing elements inside a list are dropped."""
    elements = tuple(cell) if isinstance(cell, LIST_VALUE_TYPES) else (cell,)
    return tuple(element for element in elements if not _missing(element))


def check_filter(catalog: Catalog, column: str, allowed: Any) -> None:
    """Raise :class:`~recengine.errors.RequestError` (HTTP 422) unless the filter
    ``{column: allowed}`` can apply: a known column, scalar values (strings, numbers,
    booleans), and values of the kind the column holds (no strings for a price, no numbers for
    a category, no filter on a time column). Serving checks each request with it before the
    request joins a batch; :func:`column_matches` itself only refuses non-scalar values."""
    values = item_column(catalog, column, "filter")
    wanted = _allowed_list(column, allowed)
    kind = _column_kind(values)
    if kind == "time":
        raise RequestError(f"filter {column!r}: a time column cannot be filtered by value")
    mismatch = next((v for v in wanted if kind is not None and _value_kind(v) != kind), None)
    if mismatch is not None:
        raise RequestError(f"filter {column!r}: the column holds {kind} values, got {_value_kind(mismatch)} "
                           f"{str(mismatch)[:50]!r}")


def column_matches(catalog: Catalog, column: str, items: np.ndarray, allowed: Any) -> np.ndarray:
    """Boolean mask over ``items``: True where the item's ``column`` cell holds an allowed value.

    This is what a request's ``filters`` mean. ``allowed`` is a list of values (a single
    string or number is taken as a list of one); an empty list matches nothing. A cell with
    several values matches when any does; a missing value never matches. An unknown column,
    or an allowed value that is a list or an object, raises
    :class:`~recengine.errors.RequestError`; a value of another kind than the column's
    matches nothing (:func:`check_filter` refuses it instead).
    """
    values = item_column(catalog, column, "filter")[items]
    allowed = _allowed_list(column, allowed)
    if not allowed:
        return np.zeros(len(values), dtype=bool)
    kind = values.dtype.kind
    if kind in "biuf" and all(isinstance(a, (int, float, np.number)) for a in allowed):
        return np.isin(values, np.asarray(allowed, dtype=np.float64))
    if kind == "U" and all(isinstance(a, str) for a in allowed):
        return np.isin(values, np.asarray(allowed, dtype=str))
    # Object columns (strings with None, list-valued columns) and mixed types: set lookups.
    allowed_set = set(allowed)
    listed = values.tolist()
    try:  # one hashable value per item: one C-level set lookup each
        return np.fromiter(map(allowed_set.__contains__, listed), dtype=bool, count=len(listed))
    except TypeError:  # list-valued cells (lists, arrays: unhashable) match when any element does
        return np.fromiter((any(_is_in(v, allowed_set) for v in cell_values(cell)) for cell in listed),
                           dtype=bool, count=len(listed))


def first_matches(cells: Sequence[Any], wanted: Collection[Any]) -> list[Any]:
    """Per cell, the first of its values (in cell order) that is in ``wanted``, else None.

    For rankers that say *which* value made them act (``"boosted: brand acme"``); use
    :func:`column_matches` when a mask is enough.
    """
    wanted_set = {w for w in wanted if not _missing(w)}
    if not wanted_set:
        return [None] * len(cells)
    return [next((v for v in cell_values(cell) if _is_in(v, wanted_set)), None) for cell in cells]


def code_membership(codes: np.ndarray) -> np.ndarray:
    """[n, u] booleans from value codes (``Catalog.codes``): row i marks item i's value;
    code -1 (missing) marks none. The fast path for single-valued columns."""
    present, inverse = np.unique(codes, return_inverse=True)
    membership = np.zeros((codes.shape[0], present.shape[0]), dtype=bool)
    membership[np.arange(codes.shape[0]), inverse.reshape(-1)] = True
    membership[:, present < 0] = False
    return membership


def list_membership(values: np.ndarray) -> np.ndarray:
    """[n, u] booleans for a column whose cells may hold several values (genres): row i
    marks every value of :func:`cell_values` of cell i, columns in order of first appearance.
    Single-valued columns go faster through ``Catalog.codes`` and :func:`code_membership`."""
    index: dict[Any, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for row, cell in enumerate(values.tolist()):
        for value in cell_values(cell):
            rows.append(row)
            cols.append(index.setdefault(value, len(index)))
    membership = np.zeros((values.shape[0], len(index)), dtype=bool)
    membership[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = True
    return membership


def finite_range(scores: np.ndarray) -> tuple[float, float] | None:
    """The lowest and highest finite score, or None when no score is finite (or none given)."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = scores[np.isfinite(scores)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


def min_max_normalise(scores: np.ndarray) -> np.ndarray:
    """Scores mapped to [0, 1] (float64) keeping their order; all equal → all 1.

    NaN and -inf count as the lowest score, +inf as the highest. Rankers that blend or decay
    scores normalise first, so that a model's scale (negative dot products) cannot invert them.
    """
    scores = np.asarray(scores, dtype=np.float64)
    bounds = finite_range(scores)
    if bounds is None:
        return np.where(scores == np.inf, 1.0, 0.0) if scores.size else scores
    low, high = bounds
    scores = np.nan_to_num(scores, nan=low, posinf=high, neginf=low)
    if high <= low:
        return np.ones_like(scores)
    return (scores - low) / (high - low)


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime: naive times (a request's ``now``, a config's dates) are taken
    as UTC, aware ones are converted."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _allowed_list(column: str, allowed: Any) -> list[Any]:
    """A filter's allowed values as a list, missing ones dropped; a value that cannot equal a
    cell (a list, an object: unhashable) raises :class:`~recengine.errors.RequestError`."""
    values = list(allowed) if isinstance(allowed, list | tuple | set | frozenset | np.ndarray) else [allowed]
    for value in values:
        try:
            hash(value)
        except TypeError:
            raise RequestError(f"filter {column!r}: values must be strings, numbers or booleans, "
                               f"got {type(value).__name__}") from None
    return [value for value in values if not _missing(value)]


def _value_kind(value: Any) -> str:
    """"boolean", "number", "string" or "other": a filter value must be of its column's kind."""
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | float | np.number):
        return "number"
    return "string" if isinstance(value, str) else "other"


def _column_kind(values: np.ndarray) -> str | None:
    """The kind of value a column holds ("time" for datetimes), or None when that cannot be
    told: no values among the first cells, several kinds, or values of another type."""
    if values.dtype.kind in "Mm":
        return "time"
    if values.dtype.kind != "O":
        return {"b": "boolean", "U": "string", "S": "string"}.get(values.dtype.kind, "number")
    kinds = {_value_kind(v) for cell in values[1:1 + _KIND_SAMPLE].tolist() for v in cell_values(cell)}
    return kinds.pop() if len(kinds) == 1 and "other" not in kinds else None


def _missing(value: Any) -> bool:
    """None or NaN (NaT too: the values unequal to themselves); never an array or a list."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return False


def _is_in(value: Any, allowed: set[Any]) -> bool:
    try:
        return value in allowed
    except TypeError:  # an unhashable value can never equal an allowed (hashable) one here
        return False
