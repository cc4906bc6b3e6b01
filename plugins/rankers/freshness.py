"""``freshness``: decays scores with item age and cuts off items older than a maximum age.

News is worth less by the hour. Each candidate's age is ``now - created_at`` (``now`` is the
request's, or, when the request has none, the newest ``created_at`` in the catalogue, so
replaying an old snapshot behaves as it did then). The new score is

    relevance * 0.5 ** (age / half_life)

where relevance is the incoming scores min-max normalised to [0, 1] over the candidates.
Normalising first matters: multiplying a *negative* score (dot products, log-odds) by a
decay below 1 would raise it, so older items would climb. Relevance keeps the model's
order, the decay only ever lowers it, and an item one half-life older needs twice the
relevance to stay level. The least relevant candidate gets relevance 0; when all scores tie
the order is by age alone. Candidates are re-sorted by the new score (ties keep their order).

Items older than ``max_age_hours`` are removed. Items without ``created_at`` (NaT) keep
their relevance undecayed (as if new), unless ``drop_undated`` removes them. Items dated
after ``now`` count as age 0. Naive datetimes are taken as UTC; aware ones are converted.
Items younger than one half-life get the reason ``"fresh: published 3h ago"``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import Field

from recengine.components import Candidates, ComponentConfig, RankContext, Ranker
from recengine.hookspecs import hookimpl
from recengine.ranking import as_utc, item_column, min_max_normalise

_HOUR = np.timedelta64(3_600_000_000, "us")


class Freshness(Ranker):
    """Time-decays scores by item age and drops items past ``max_age_hours``."""

    class Config(ComponentConfig):
        half_life_hours: float = Field(24.0, gt=0, description="Age at which the score halves.")
        max_age_hours: float | None = Field(None, gt=0, description="Drop items older than this.")
        drop_undated: bool = Field(False, description="Drop items whose creation time is missing.")
        column: str = Field("created_at", description="Item column holding the creation time.")

    config: Config

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        self._newest: tuple[np.ndarray, np.datetime64] | None = None  # (column, its max) cache

    @property
    def reads_request_time(self) -> bool:
        return True  # item age is measured from the request's time

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:
        if len(candidates) == 0:
            return Candidates.empty()
        column = item_column(context.catalog, self.config.column, "freshness")
        created = column[candidates.items].astype("datetime64[us]")
        dated = ~np.isnat(created)
        now = self._now(context, column)
        if np.isnat(now):  # no dates at all: every candidate is undated
            age_hours = np.zeros(len(candidates))
        else:
            age_hours = np.where(dated, (now - created) / _HOUR, 0.0).clip(min=0.0)

        keep = dated if self.config.drop_undated else np.ones(len(candidates), dtype=bool)
        if self.config.max_age_hours is not None:
            keep = keep & ~(dated & (age_hours > self.config.max_age_hours))
        kept = np.flatnonzero(keep)
        age_hours, dated = age_hours[kept], dated[kept]

        decay = np.where(dated, 0.5 ** (age_hours / self.config.half_life_hours), 1.0)
        scores = min_max_normalise(candidates.scores[kept]) * decay
        order = np.argsort(-scores, kind="stable")
        positions = kept[order]
        fresh = dated[order] & (age_hours[order] < self.config.half_life_hours)
        reasons = [
            candidates.reasons[p] + [f"fresh: published {_describe_age(a)}"] if f else candidates.reasons[p]
            for p, f, a in zip(positions.tolist(), fresh.tolist(), age_hours[order].tolist())
        ]
        return Candidates(candidates.items[positions], scores[order].astype(np.float32), reasons)

    def _now(self, context: RankContext, column: np.ndarray) -> np.datetime64:
        if context.now is not None:
            return _as_datetime64(context.now)
        cached = self._newest
        if cached is None or cached[0] is not column:  # a new catalogue snapshot
            times = column.astype("datetime64[us]")
            times = times[~np.isnat(times)]
            newest = times.max() if times.size else np.datetime64("NaT", "us")
            self._newest = cached = (column, newest)
        return cached[1]


def _as_datetime64(moment: datetime) -> np.datetime64:
    return np.datetime64(as_utc(moment).replace(tzinfo=None), "us")


def _describe_age(hours: float) -> str:
    if hours < 1.0:
        minutes = int(hours * 60)
        return "just now" if minutes < 1 else f"{minutes}m ago"
    if hours < 48.0:
        return f"{int(hours)}h ago"
    return f"{int(hours // 24)}d ago"


@hookimpl
def register_rankers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``freshness``."""
    register("freshness", Freshness)
