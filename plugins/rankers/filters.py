"""Filtering rankers: ``topk`` keeps the best k, ``exclude-seen`` drops what must not be shown.

``exclude-seen`` removes the user's history (all of it, or only events of some types:
e-commerce shows viewed products again but not purchased ones), the request's ``exclude``
list and every item failing the request's attribute ``filters``, matched by
:func:`recengine.ranking.column_matches`, the matcher every ranker (``popularity-fallback``,
plugins) uses so that filters mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field

from recengine.components import Candidates, ComponentConfig, RankContext, Ranker
from recengine.hookspecs import hookimpl
from recengine.ranking import column_matches


class TopK(Ranker):
    """Keeps the ``k`` highest-scoring candidates, best first.

    Ties are broken by item index (ascending) so the result does not depend on the order
    candidates arrived in; NaN scores sort last.
    """

    class Config(ComponentConfig):
        k: int | None = Field(None, ge=1, description="How many to keep; default: the request's k.")

    config: Config

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:
        k = self.config.k or context.k
        if len(candidates) == 0 or k <= 0:
            return Candidates.empty()
        # lexsort sorts by the last key first: score descending, then item index ascending.
        order = np.lexsort((candidates.items, -candidates.scores.astype(np.float64)))
        return candidates.take(order[:k])


class ExcludeSeen(Ranker):
    """Drops history items, the request's ``exclude`` items and items failing its ``filters``.

    ``event_types`` limits which history events count as "seen" (for example
    ``["purchase"]``); it needs ``context.history_event_types`` aligned with
    ``context.history`` and raises ``ValueError`` when they are not, rather than guessing.
    A filter ``{column: allowed}`` keeps an item when its value in ``catalog.columns[column]``
    is allowed; for list-valued columns (genres) when any element is. Missing values (None)
    never match; an empty allowed list matches nothing.
    """

    class Config(ComponentConfig):
        event_types: list[str] | None = Field(
            None, description="History event types to exclude; default: every history item."
        )

    config: Config

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:
        if len(candidates) == 0:
            return Candidates.empty()
        items = candidates.items
        keep = np.ones(len(candidates), dtype=bool)
        seen = self.seen_items(context)
        if seen.size:
            keep &= ~np.isin(items, seen)
        if len(context.exclude):
            keep &= ~np.isin(items, np.asarray(context.exclude, dtype=np.int64))
        for column, allowed in context.filters.items():
            keep &= column_matches(context.catalog, column, items, allowed)
        return candidates.take(np.flatnonzero(keep))

    def seen_items(self, context: RankContext) -> np.ndarray:
        """The items this ranker excludes (all, or those of ``event_types``): every such event
        the snapshot knows when ``context.seen`` is there, else the recent history."""
        wanted = self.config.event_types
        if context.seen is not None:
            return np.asarray(context.seen(wanted), dtype=np.int64)
        history = np.asarray(context.history, dtype=np.int64)
        if wanted is None or history.size == 0:
            return history
        types = context.history_event_types
        if len(types) != history.size:
            raise ValueError(
                f"exclude-seen with event_types={wanted} needs one event type per history item; "
                f"got {len(types)} types for {history.size} items"
            )
        wanted_set = set(wanted)
        return history[np.fromiter((t in wanted_set for t in types), dtype=bool, count=history.size)]


@hookimpl
def register_rankers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``topk`` and ``exclude-seen``."""
    register("topk", TopK)
    register("exclude-seen", ExcludeSeen)
