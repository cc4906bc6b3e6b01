"""The items a request allows, and candidate retrieval within them.

A request's ``filters`` and ``exclude`` rule items out before anything is scored: the
Recommender retrieves a filtered request's candidates among the items its filters allow
(and never an excluded one), instead of filtering the catalogue-wide top-N afterwards, which
left a user filtering on a category the model ranks low with a short list or none at all.
Filters mean what :func:`recengine.ranking.column_matches` says; each (column, values) mask
over the catalogue is computed once and kept (:data:`FILTER_MASKS_KEPT` of them, least
recently used dropped first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from recengine.components import Catalog
from recengine.ranking import column_matches

FILTER_MASKS_KEPT = 256  # [N+1] booleans each: 25 MB at 100k items


class AllowedItems:
    """Which items of one catalogue a request's filters and exclusions leave."""

    def __init__(self, catalog: Catalog, kept: int = FILTER_MASKS_KEPT) -> None:
        self.catalog = catalog
        self.kept = kept
        self._items = np.arange(catalog.size + 1, dtype=np.int64)
        self._masks: OrderedDict[tuple[str, tuple[Any, ...]], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, filters: dict[str, list[Any]], exclude: np.ndarray) -> np.ndarray | None:
        """Dense indices (ascending) of the items passing every filter and not excluded;
        None when the request rules nothing out (retrieve from the whole catalogue)."""
        if not filters and not exclude.size:
            return None
        allowed = np.ones(self.catalog.size + 1, dtype=bool)
        allowed[0] = False  # the padding item
        for column, values in filters.items():
            allowed &= self._mask(column, values)
        allowed[exclude] = False
        return np.flatnonzero(allowed)

    def _mask(self, column: str, values: list[Any]) -> np.ndarray:
        key = (column, tuple(values) if isinstance(values, list | tuple) else (values,))
        with self._lock:
            mask = self._masks.get(key)
            if mask is not None:
                self._masks.move_to_end(key)
                return mask
        mask = column_matches(self.catalog, column, self._items, values)
        mask.flags.writeable = False
        with self._lock:
            self._masks[key] = mask
            while len(self._masks) > self.kept:
                self._masks.popitem(last=False)
        return mask


def search_within(matrix: np.ndarray, query: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of the ``allowed`` rows of ``matrix`` with the largest inner product with
    ``query``, in no particular order (all of them when no more than ``n`` are allowed).
    An exact scan: one matrix-vector product over the catalogue."""
    if allowed.size <= n:
        return allowed
    scores = (matrix @ query)[allowed]
    return allowed[np.argpartition(scores, -n)[-n:]]
