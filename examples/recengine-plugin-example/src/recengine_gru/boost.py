"""``boost-rule``: a business rule that promotes or demotes items by an attribute.

The rule, for each candidate item with value ``v`` in the item column ``column``:

- promoted when ``v`` is in ``boost`` (a campaign's brands, say) or equals the requesting
  user's attribute ``user_attribute`` (``context.user_attributes``: local items for a user's
  ``country``, articles in a reader's ``topic``);
- demoted when ``v`` is in ``demote`` (clearance stock, a paused supplier);
- only while the request's time (``context.now``, the API's ``context.time``) lies in
  ``[active_from, active_until)``; a request without a time always applies the rule.

A promotion adds ``weight × (max score − min score)`` of the candidates to the item's score
and a demotion subtracts it (both cancel), so ``weight`` means the same whatever the
model's score scale: 0.5 moves an item half the candidates' score range, 1.0 or more puts
every promoted item above every other one. Candidates are then re-sorted by score (ties
keep their previous order) and touched items get a reason: ``"boosted: brand acme"``,
``"boosted: country matches yours"`` or ``"demoted: brand clearance"``.

Cells are matched by :mod:`recengine.ranking`'s rule, as the engine's filters are: a list, set
or array cell (genres) matches when any element does, a tuple is one value, and missing
values never match. The ranker reads but never changes its input (returning it as it is when
the rule changes nothing), and builds new reason lists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from recengine.components import Candidates, ComponentConfig, RankContext, Ranker
from recengine.ranking import as_utc, cell_values, finite_range, first_matches, item_column

Value = str | int | float


class BoostRuleConfig(ComponentConfig):
    """Parameters of ``boost-rule`` (a ``ranking.rankers`` entry's ``params``)."""

    column: str = Field("category", description="Item column the rule reads (an item attribute of the store).")
    boost: list[Value] = Field(default_factory=list, description="Column values to promote.")
    demote: list[Value] = Field(default_factory=list, description="Column values to push down.")
    user_attribute: str | None = Field(
        None, description="Also promote items whose column value equals this attribute of the requesting user.")
    weight: float = Field(0.5, ge=0, description="Size of a promotion/demotion, as a fraction of the score range.")
    active_from: datetime | None = Field(None, description="The rule applies to requests at or after this time.")
    active_until: datetime | None = Field(None, description="The rule applies to requests before this time.")

    @model_validator(mode="after")
    def _window(self) -> BoostRuleConfig:
        if self.active_from and self.active_until and as_utc(self.active_until) <= as_utc(self.active_from):
            raise ValueError("active_until must be after active_from")
        return self


def _mask(found: list[Any]) -> np.ndarray:
    return np.fromiter((f is not None for f in found), dtype=bool, count=len(found))


class BoostRule(Ranker):
    """Promote/demote candidates by an item attribute, per config and the requesting user."""

    Config = BoostRuleConfig
    config: BoostRuleConfig

    @property
    def reads_request_time(self) -> bool:
        """A rule with an active window is switched by the request's time."""
        return self.config.active_from is not None or self.config.active_until is not None

    def active(self, context: RankContext) -> bool:
        """Whether the request's time lies in the rule's window (always without a time)."""
        if context.now is None:
            return True
        now = as_utc(context.now)
        start, end = self.config.active_from, self.config.active_until
        return (start is None or now >= as_utc(start)) and (end is None or now < as_utc(end))

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:
        if len(candidates) == 0:
            return Candidates.empty()
        column = self.config.column
        values = item_column(context.catalog, column, "boost-rule")  # an unknown column fails even off-window
        if not self.active(context):
            return candidates
        cells = values[candidates.items].tolist()
        boosted = first_matches(cells, self.config.boost)
        demoted = first_matches(cells, self.config.demote)
        attribute = self.config.user_attribute
        mine = context.user_attributes.get(attribute) if attribute else None
        personal = _mask(first_matches(cells, cell_values(mine)))  # a list attribute: any of its values
        promoted = _mask(boosted) | personal
        demoted_mask = _mask(demoted)
        if not (promoted.any() or demoted_mask.any()):
            return candidates
        scores = candidates.scores.astype(np.float64)
        low, high = finite_range(scores) or (0.0, 0.0)
        spread = high - low
        step = self.config.weight * (spread if spread > 0 else 1.0)
        new_scores = scores + step * (promoted.astype(np.float64) - demoted_mask.astype(np.float64))
        reasons = []
        for position, reason in enumerate(candidates.reasons):
            added = []
            if boosted[position] is not None:
                added.append(f"boosted: {column} {boosted[position]}")
            elif personal[position]:
                added.append(f"boosted: {column} matches your {attribute}")
            if demoted[position] is not None:
                added.append(f"demoted: {column} {demoted[position]}")
            reasons.append(reason + added if added else reason)
        order = np.argsort(-new_scores, kind="stable")
        return Candidates(candidates.items[order], new_scores[order].astype(np.float32),
                          [reasons[i] for i in order.tolist()])

