"""``diversity``: maximal marginal relevance (MMR) over item vectors, with an optional
per-category cap.

A list of ten near-identical items wastes nine slots: after a user buys running shoes, ten
running shoes are worse than five plus socks, a watch and a water bottle. MMR picks items
greedily, each time maximising

    lambda * relevance(i) - (1 - lambda) * max_{j selected} cos(v_i, v_j)

with relevance the candidates' scores min-max normalised to [0, 1] and ``v`` the rows of
``catalog.vectors`` (L2-normalised, so a dot product is a cosine). ``lambda = 1`` is pure
score order; ``lambda = 0`` is pure novelty. With ``field`` set (``"category"``), an item
whose value already fills ``max_per_value`` of the picks is skipped as long as some
uncapped candidate remains.

The cap is a rule wherever the catalogue allows it. When the candidates alone cannot keep it
(a model whose top-N is all shoes; a cold user's k popular items), the most popular
catalogue items of values the candidates leave room for join as reserves (never an item the
request filters out or excludes, nor one the user has seen), scored below every candidate
and with the reason ``"popular"``: MMR takes them only where the cap forces it. Only when no
such item exists (a filter on one category) is the cap relaxed, so a request never returns
fewer items than it could.

The output holds the ``k`` picks in pick order and drops the rest (so put ``diversity``
last, or after anything that re-sorts by score: a later score sort would undo it). Scores
are left as they came (the model's), so they need not decrease down the list. Picks that
pure score order would not have put in the top k get the reason ``"diversified"``
(``"diversified (category)"`` with a field).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field

from recengine.components import Candidates, Catalog, ComponentConfig, RankContext, Ranker
from recengine.hookspecs import hookimpl
from recengine.ranking import (
    cell_values,
    code_membership,
    column_matches,
    finite_range,
    item_column,
    list_membership,
    min_max_normalise,
)

RESERVE_REASON = "popular"
_RESERVE_BLOCK = 1024  # catalogue items examined at a time when looking for reserves


class Diversity(Ranker):
    """Reorders candidates by MMR and keeps the first ``k`` (see the module docstring)."""

    class Config(ComponentConfig):
        model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

        k: int | None = Field(None, ge=1, description="How many to pick; default: the request's k.")
        lambda_: float = Field(
            0.7, alias="lambda", ge=0.0, le=1.0,
            description="Weight of relevance against similarity to items already picked.",
        )
        field: str | None = Field(None, description="Item column whose values are capped, e.g. category.")
        max_per_value: int = Field(2, ge=1, description="Most picks per value of `field`.")

    config: Config

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        # (catalogue popularity, item indices by popularity descending): reserves' order
        self._popular: tuple[np.ndarray, np.ndarray] | None = None

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:
        n = len(candidates)
        k = min(self.config.k or context.k, n)
        if k <= 0:
            return Candidates.empty()
        relevance = min_max_normalise(candidates.scores)
        picks = self._pick(candidates, relevance, context, k)
        if self._over_cap(candidates.items[picks], context):  # the candidates alone cannot keep the cap
            reserves = self._reserves(candidates, context, k)
            if len(reserves):
                candidates = Candidates(np.concatenate([candidates.items, reserves.items]),
                                        np.concatenate([candidates.scores, reserves.scores]),
                                        [*candidates.reasons, *reserves.reasons])
                relevance = np.concatenate([relevance, np.zeros(len(reserves))])  # below every candidate
                picks = self._pick(candidates, relevance, context, k)

        # Reasons for the picks that pure score order would have left out of the top k.
        by_score = np.argsort(-relevance, kind="stable")
        in_score_top = np.zeros(len(candidates), dtype=bool)
        in_score_top[by_score[:k]] = True
        reason = f"diversified ({self.config.field})" if self.config.field else "diversified"
        reasons = [
            candidates.reasons[p] + [reason] if not in_score_top[p] else candidates.reasons[p]
            for p in picks.tolist()
        ]
        return Candidates(candidates.items[picks], candidates.scores[picks], reasons)

    def _pick(self, candidates: Candidates, relevance: np.ndarray, context: RankContext, k: int) -> np.ndarray:
        """Positions of the k MMR picks among ``candidates``."""
        matrix = context.catalog.vectors
        has_vectors = matrix is not None and matrix.ndim == 2 and matrix.shape[0] > 0
        vectors = np.asarray(matrix[candidates.items] if has_vectors else np.zeros((len(candidates), 0)),
                             dtype=np.float32)
        groups = self._groups(candidates.items, context)
        return _mmr(relevance, vectors, groups, k, self.config.lambda_, self.config.max_per_value)

    def _groups(self, items: np.ndarray, context: RankContext) -> np.ndarray | None:
        """[n, u] membership of ``items`` in the values of ``field`` (None without a field)."""
        if self.config.field is None:
            return None
        column = item_column(context.catalog, self.config.field, "diversity field")
        codes = context.catalog.codes(self.config.field)  # computed once per catalogue
        return code_membership(codes[items]) if codes is not None else list_membership(column[items])

    def _over_cap(self, picked: np.ndarray, context: RankContext) -> bool:
        groups = self._groups(picked, context)
        return groups is not None and bool((groups.sum(axis=0) > self.config.max_per_value).any())

    def _reserves(self, candidates: Candidates, context: RankContext, k: int) -> Candidates:
        """Up to k catalogue items, most popular first, that the cap can still take: outside
        the candidates, allowed by the request's filters, not excluded, not seen by the user,
        and holding no value the candidates already fill ``max_per_value`` times."""
        catalog, cap = context.catalog, self.config.max_per_value
        values_of = self._values_of(catalog)
        filled = Counter(v for item in candidates.items.tolist() for v in values_of(item))
        seen = context.seen(None) if context.seen is not None else context.history
        skip = np.concatenate([np.asarray(a, dtype=np.int64) for a in (candidates.items, context.exclude, seen)])
        codes = catalog.codes(self.config.field) if self.config.field is not None else None
        order, largest = self._popularity_order(catalog)
        found: list[int] = []
        for start in range(0, order.size, _RESERVE_BLOCK):
            block = order[start:start + _RESERVE_BLOCK]
            allowed = ~np.isin(block, skip)
            full = [v for v, count in filled.items() if count >= cap]
            if codes is not None and full:  # single-valued: drop filled values' items at once
                allowed &= ~np.isin(codes[block], full)
            for column, wanted in context.filters.items():
                allowed &= column_matches(catalog, column, block, wanted)
            for item in block[allowed].tolist():
                values = values_of(item)
                if all(filled[v] < cap for v in values):
                    found.append(item)
                    filled.update(values)
                    if len(found) == k:
                        break
            if len(found) == k:
                break
        items = np.asarray(found, dtype=np.int64)
        bounds = finite_range(candidates.scores)
        popularity = np.asarray(catalog.popularity[items], dtype=np.float64) / (largest if largest > 0 else 1.0)
        scores = (bounds[0] if bounds else 0.0) - 2.0 + popularity  # below every candidate, by popularity
        return Candidates(items, scores.astype(np.float32), [[RESERVE_REASON] for _ in found])

    def _values_of(self, catalog: Catalog) -> Callable[[int], tuple[Any, ...]]:
        """An item's values of ``field``: its code (single-valued columns) or its cell's values."""
        assert self.config.field is not None
        codes = catalog.codes(self.config.field)
        if codes is not None:
            return lambda item: (int(codes[item]),) if codes[item] >= 0 else ()
        column = catalog.columns[self.config.field]
        return lambda item: cell_values(column[item])

    def _popularity_order(self, catalog: Catalog) -> tuple[np.ndarray, float]:
        """Item indices by catalogue popularity (descending, ties by index), sorted once per catalogue."""
        cached = self._popular
        if cached is None or cached[0] is not catalog.popularity:
            popularity = np.asarray(catalog.popularity, dtype=np.float64)[1:]
            self._popular = cached = (catalog.popularity, np.argsort(-popularity, kind="stable").astype(np.int64) + 1)
        order = cached[1]
        return order, float(catalog.popularity[order[0]]) if order.size else 0.0


def _mmr(
    relevance: np.ndarray,
    vectors: np.ndarray,
    groups: np.ndarray | None,
    k: int,
    lam: float,
    cap: int,
) -> np.ndarray:
    """Positions of ``k`` greedy MMR picks; ``groups`` is an [n, u] value-membership matrix.

    Each step costs one [n, d] matrix-vector product, so k picks cost O(k * n * d).
    Ties go to the earlier (higher-placed) candidate.
    """
    relevance_part = lam * relevance  # set to -inf once an item is picked
    gain = relevance_part.copy()
    redundancy: np.ndarray | None = None  # max similarity to the picks so far
    counts = np.zeros(groups.shape[1] if groups is not None else 0, dtype=np.int64)
    use_vectors = vectors.ndim == 2 and vectors.shape[1] > 0 and lam < 1.0
    picks = np.empty(k, dtype=np.int64)
    for step in range(k):
        pick = int(np.argmax(gain))
        if groups is not None and (counts >= cap).any():
            capped = np.where(groups[:, counts >= cap].any(axis=1), -np.inf, gain)
            best = int(np.argmax(capped))
            if capped[best] > -np.inf:  # relaxed once every candidate left is capped
                pick = best
        picks[step] = pick
        relevance_part[pick] = gain[pick] = -np.inf
        if groups is not None:
            counts += groups[pick]
        if use_vectors:
            similarity = vectors @ vectors[pick]
            if redundancy is None:
                redundancy = similarity
            else:
                np.maximum(redundancy, similarity, out=redundancy)
            np.subtract(relevance_part, (1.0 - lam) * redundancy, out=gain)
    return picks


@hookimpl
def register_rankers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``diversity``."""
    register("diversity", Diversity)
