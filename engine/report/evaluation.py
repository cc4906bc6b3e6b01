"""One ranked run on an evaluation split -- a bundle, or the popularity baseline -- and every
figure the report derives from its top-K lists: metric@K curves, the metric table, per-user values
for paired tests, user segments, popularity deciles and how often each item is recommended."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recengine.beyond_accuracy import DEFAULT_TAIL_FRACTION, beyond_accuracy, recommendation_counts
from recengine.evaluate import Catalogue, Ranking
from recengine.metrics import RANKING_METRICS, gauc, per_user_metric, positives_matrix, ranking_metrics
from recengine.segments import DEFAULT_USER_EDGES, item_deciles, per_decile, user_segments

__all__ = ["CURVE_METRICS", "RankedRun", "TABLE_KS"]

#: The cut-offs of the metric table (the curves run 1 … K).
TABLE_KS: tuple[int, ...] = (10, 20)
#: The metric@K curves drawn, in panel order.
CURVE_METRICS: tuple[str, ...] = ("recall", "ndcg", "hit", "precision", "map", "mrr")


@dataclass
class RankedRun:
    """A scorer's top-``K`` lists for the test users of one split, in one bundle's id space."""

    label: str
    kind: str  # "bundle" or "baseline"
    ranking: Ranking
    positives: list[np.ndarray]
    user_ids: list[str]  # external id of each evaluated user, row-aligned with ``ranking.top``
    history_lengths: np.ndarray  # training events of each evaluated user
    catalogue: Catalogue
    history: list[dict[str, Any]] = field(default_factory=list)  # training epochs (bundles)
    best_epoch: int | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what the report says of where it came from

    @property
    def k_max(self) -> int:
        return int(self.ranking.top.shape[1])

    @property
    def num_items(self) -> int:
        return len(self.catalogue.popularity) - 1

    def curves(self) -> dict[str, np.ndarray]:
        """Each of :data:`CURVE_METRICS` at K = 1 … ``k_max``, averaged over the users with a positive."""
        ks = tuple(range(1, self.k_max + 1))
        values = ranking_metrics(self.ranking.top, self.positives, ks)
        return {name: np.array([values[f"{name}@{k}"] for k in ks]) for name in CURVE_METRICS}

    def table(self, ks: Sequence[int] = TABLE_KS, tail_fraction: float = DEFAULT_TAIL_FRACTION) -> dict[str, float]:
        """Accuracy (RecBole's five and MAP), GAUC and the beyond-accuracy metrics at ``ks``."""
        ks = tuple(k for k in ks if k <= self.k_max) or (self.k_max,)
        out = ranking_metrics(self.ranking.top, self.positives, ks)
        if self.ranking.auc is not None and self.ranking.pos_len is not None:
            out["gauc"] = gauc(self.ranking.auc, self.ranking.pos_len)
        out.update(beyond_accuracy(self.ranking.top, ks, self.catalogue.popularity, self.catalogue.num_users,
                                   tail_fraction))
        return out

    def per_user(self, metric: str) -> dict[str, float]:
        """``metric`` ("ndcg@10", any of :data:`~recengine.metrics.RANKING_METRICS`) per external user
        id, for the users with a positive."""
        name, _, cut = metric.partition("@")
        if name not in RANKING_METRICS or not cut.isdigit():
            raise ValueError(f"paired metric must be one of {', '.join(RANKING_METRICS)} with @K, got {metric!r}")
        k = min(int(cut), self.k_max)
        has_positive = np.array([p.size > 0 for p in self.positives], dtype=bool)
        values = per_user_metric(self.ranking.top, self.positives, name, k)
        users = [user for user, keep in zip(self.user_ids, has_positive) if keep]
        return dict(zip(users, values.tolist()))

    def segments(self, k: int = 10, edges: Sequence[int] = DEFAULT_USER_EDGES) -> list[dict[str, Any]]:
        """NDCG@k, Recall@k and Hit@k of cold / light / heavy users (by training events)."""
        k = min(k, self.k_max)
        pos_index, pos_len = positives_matrix(self.ranking.top[:, :k], self.positives)
        rows = []
        for segment in user_segments(self.history_lengths, edges):
            keep = segment.rows[pos_len[segment.rows] > 0]
            row: dict[str, Any] = {"segment": segment.name, "label": segment.label, "users": int(keep.size)}
            if keep.size:
                values = ranking_metrics(self.ranking.top[keep, :k], [self.positives[i] for i in keep], (k,))
                row.update({key: values[key] for key in (f"ndcg@{k}", f"recall@{k}", f"hit@{k}")})
            rows.append(row)
        return rows

    def deciles(self, k: int = 10) -> list[dict[str, float]]:
        """Per item-popularity decile: share of positives, their recall@k, share of recommended slots."""
        return per_decile(self.ranking.top, self.positives, item_deciles(self.catalogue.popularity),
                          min(k, self.k_max))

    def recommended(self, k: int = 10) -> np.ndarray:
        """``[N + 1]``: in how many users' top-``k`` each item is (the popularity-bias plot's y)."""
        return recommendation_counts(self.ranking.top, min(k, self.k_max), self.num_items)
