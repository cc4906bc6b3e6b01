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
uncapped candidate remains: the cap is soft, so a request never returns fewer items than
it could.

The output holds the ``k`` picks in pick order and drops the rest (so put ``diversity``
last, or after anything that re-sorts by score: a later score sort would undo it). Scores
are left as they came (the model's), so they need not decrease down the list. Picks that
pure score order would not have put in the top k get the reason ``"diversified"``
(``"diversified (category)"`` with a field).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field

from recengine.components import Candidates, ComponentConfig, RankContext, Ranker
from recengine.hookspecs import hookimpl
from recengine.ranking import code_membership, item_column, list_membership, min_max_normalise


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

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:
        n = len(candidates)
        k = min(self.config.k or context.k, n)
        if k <= 0:
            return Candidates.empty()
        relevance = min_max_normalise(candidates.scores)
        matrix = context.catalog.vectors
        has_vectors = matrix is not None and matrix.ndim == 2 and matrix.shape[0] > 0
        vectors = np.asarray(matrix[candidates.items] if has_vectors else np.zeros((n, 0)), dtype=np.float32)
        groups = None
        if self.config.field is not None:
            column = item_column(context.catalog, self.config.field, "diversity field")
            codes = context.catalog.codes(self.config.field)  # computed once per catalogue
            groups = (code_membership(codes[candidates.items]) if codes is not None
                      else list_membership(column[candidates.items]))
        picks = _mmr(relevance, vectors, groups, k, self.config.lambda_, self.config.max_per_value)

        # Reasons for the picks that pure score order would have left out of the top k.
        by_score = np.argsort(-relevance, kind="stable")
        in_score_top = np.zeros(n, dtype=bool)
        in_score_top[by_score[:k]] = True
        reason = f"diversified ({self.config.field})" if self.config.field else "diversified"
        reasons = [
            candidates.reasons[p] + [reason] if not in_score_top[p] else candidates.reasons[p]
            for p in picks.tolist()
        ]
        return Candidates(candidates.items[picks], candidates.scores[picks], reasons)


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
            if capped[best] > -np.inf:  # soft cap: ignored once every candidate left is capped
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
