"""``popularity-fallback``: the most popular items for users the model knows nothing about.

A model has nothing personal to say to a new user (unknown id, or a known id with no
history yet); the most popular items are the strongest simple answer. For such requests
this ranker *replaces* the candidates with the ``k`` most popular items of
``catalog.popularity``, scored by popularity divided by the catalogue's largest popularity
(so in [0, 1]). For users with history but fewer than ``k`` candidates (strict filters, a
tiny catalogue), it appends popular items not already present, scored just below the lowest
candidate so that a later sort by score keeps them after the model's own. Everything else
passes through unchanged. Added items carry the reason ``"popular"``.

Popular items always skip the padding item 0, the request's ``exclude`` list, items failing
its ``filters`` (same matching as ``exclude-seen``) and, with ``exclude_history``, the
user's history. Ties in popularity go to the lower item index. The popularity ranking is
sorted once per catalogue snapshot and cached, so a request costs O(k), not O(N log N).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field

from recengine.components import Candidates, Catalog, ComponentConfig, RankContext, Ranker
from recengine.hookspecs import hookimpl
from recengine.ranking import column_matches, finite_range

POPULAR = "popular"


class PopularityFallback(Ranker):
    """Answers cold users with popular items and tops up short candidate lists."""

    class Config(ComponentConfig):
        k: int | None = Field(
            None, ge=1, description="How many items to answer with or top up to; default: the request's k."
        )
        top_up: bool = Field(True, description="Fill known users' lists shorter than k with popular items.")
        exclude_history: bool = Field(True, description="Never add items from the user's history.")
        everyone: bool = Field(False, description="Answer every request with popular items, known users too: a "
                                                  "popularity baseline, e.g. the control arm of an experiment.")

    config: Config

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        # (popularity array, item indices by popularity descending, largest popularity)
        self._ranking: tuple[np.ndarray, np.ndarray, float] | None = None

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:
        k = self.config.k or context.k
        cold = self.config.everyone or not context.known_user or (
            len(context.history) == 0 and not context.recent_searches)  # a searching newcomer is no cold user
        if not cold and (not self.config.top_up or len(candidates) >= k):
            return candidates
        skip = [np.asarray(context.exclude, dtype=np.int64)]
        if self.config.exclude_history:
            skip.append(np.asarray(context.history, dtype=np.int64))
        if not cold:
            skip.append(candidates.items)
        count = k if cold else k - len(candidates)
        segment = context.segment_popularity() if cold and context.segment_popularity else None
        if segment is not None:
            items, popularity = self.most_popular(context, count, np.concatenate(skip), segment.counts, segment.order)
            reason = f"popular with users like you ({segment.description})"
            return Candidates(items, popularity.astype(np.float32), [[reason] for _ in range(len(items))])
        items, popularity = self.most_popular(context, count, np.concatenate(skip))
        if cold:
            return Candidates(items, popularity.astype(np.float32), [[POPULAR] for _ in range(len(items))])

        bounds = finite_range(candidates.scores)
        floor = bounds[0] if bounds else 0.0
        extra_scores = floor - 2.0 + popularity  # in [floor - 2, floor - 1]: below every candidate
        return Candidates(
            np.concatenate([candidates.items, items]),
            np.concatenate([candidates.scores, extra_scores.astype(np.float32)]),
            list(candidates.reasons) + [[POPULAR] for _ in range(len(items))],
        )

    def most_popular(
        self, context: RankContext, count: int, skip: np.ndarray,
        counts: np.ndarray | None = None, order: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``count`` most popular allowed items not in ``skip``, with normalised popularity.

        ``counts``/``order`` replace the catalogue's popularity (a segment's, for new users).
        """
        catalog = context.catalog
        if counts is None or order is None:
            order, largest = self._popularity_order(catalog)
            counts = catalog.popularity
        else:
            largest = float(counts[order[0]]) if order.size else 0.0
        found: list[np.ndarray] = []
        start, block_size, missing = 0, max(4 * count, 64) + skip.size, count
        while missing > 0 and start < order.size:
            block = order[start:start + block_size]
            allowed = ~np.isin(block, skip) if skip.size else np.ones(block.size, dtype=bool)
            for column, values in context.filters.items():
                allowed &= column_matches(catalog, column, block, values)
            found.append(block[allowed][:missing])
            missing -= found[-1].size
            start, block_size = start + block_size, block_size * 2
        items = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        popularity = np.asarray(counts[items], dtype=np.float64)
        return items, popularity / largest if largest > 0 else np.zeros_like(popularity)

    def _popularity_order(self, catalog: Catalog) -> tuple[np.ndarray, float]:
        ranking = self._ranking
        if ranking is None or ranking[0] is not catalog.popularity:  # a new catalogue snapshot
            popularity = np.asarray(catalog.popularity, dtype=np.float64)[1:]
            order = np.argsort(-popularity, kind="stable").astype(np.int64) + 1
            largest = float(popularity.max()) if popularity.size else 0.0
            self._ranking = ranking = (catalog.popularity, order, largest)
        return ranking[1], ranking[2]


@hookimpl
def register_rankers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``popularity-fallback``."""
    register("popularity-fallback", PopularityFallback)
