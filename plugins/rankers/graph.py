"""``friends-of-friends``: people followed by the people you follow, beside learned candidates.

For "people you may know": triadic closure is the strongest simple signal in a follow
graph. The ranker reads the user's follows from the history, asks the snapshot for each
followed person's follows (``context.history_of``), counts how many of your follows
follow each candidate, and blends that count into the learned scores; friends of friends
the model did not retrieve are added. It always removes the user themself (a person item
whose id is the user id) and everyone already followed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field

from recengine.components import Candidates, ComponentConfig, RankContext, Ranker
from recengine.hookspecs import hookimpl
from recengine.ranking import column_matches, min_max_normalise


class FriendsOfFriends(Ranker):
    """Blend ``weight × (mutual follows / most mutual follows)`` into min-max-normalised scores."""

    class Config(ComponentConfig):
        follow_event: str = Field("follow", description="Event type that means 'follows this person'.")
        weight: float = Field(1.0, ge=0, description="Weight of the friend-of-friend signal.")
        max_added: int = Field(50, ge=0, description="Most friends of friends added beyond the model's.")
        max_followed_scanned: int = Field(100, ge=1, description="Followed people whose follows are read.")

    config: Config

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:
        self_index = context.item_index.get(context.user_id, 0)
        history = np.asarray(context.history, dtype=np.int64)
        types = context.history_event_types
        if len(types) == len(history):
            followed = history[[t == self.config.follow_event for t in types]]
        else:
            followed = history[:0]
        if context.seen is not None:  # every follow, not only the recent history
            followed = np.union1d(followed, context.seen([self.config.follow_event]))
        banned = set(followed.tolist()) | {self_index, 0} | set(np.asarray(context.exclude, dtype=np.int64).tolist())
        keep = np.array([i not in banned for i in candidates.items.tolist()], dtype=bool)
        candidates = candidates.take(np.flatnonzero(keep))
        mutual = self._mutual_counts(followed, banned, context)
        if not mutual:
            return candidates
        top = mutual.most_common()
        most = top[0][1]
        present = {item: position for position, item in enumerate(candidates.items.tolist())}
        extra = np.asarray([item for item, _ in top if item not in present], dtype=np.int64)
        for column, allowed in context.filters.items():  # added people obey the request's filters too
            extra = extra[column_matches(context.catalog, column, extra, allowed)]
        extra = extra[: self.config.max_added].tolist()
        items = np.concatenate([candidates.items, np.asarray(extra, dtype=np.int64)])
        base = np.concatenate([min_max_normalise(candidates.scores), np.zeros(len(extra))])
        bonus = np.array([mutual.get(i, 0) / most for i in items.tolist()])
        scores = (base + self.config.weight * bonus).astype(np.float32)
        reasons = [*candidates.reasons, *([] for _ in extra)]
        reasons = [r + [_followed_by(mutual[i])] if i in mutual else r
                   for r, i in zip(reasons, items.tolist())]
        order = np.argsort(-scores, kind="stable")
        return Candidates(items[order], scores[order], [reasons[i] for i in order.tolist()])

    def _mutual_counts(self, followed: np.ndarray, banned: set[int], context: RankContext) -> Counter:
        counts: Counter = Counter()
        if context.history_of is None or followed.size == 0:
            return counts
        ids = context.catalog.item_ids
        for person in followed[-self.config.max_followed_scanned:].tolist():
            items, types = context.history_of(str(ids[person]))
            for item, event_type in zip(items, types):
                index = context.item_index.get(item, 0)
                if event_type == self.config.follow_event and index not in banned:
                    counts[index] += 1
        return counts


def _followed_by(count: int) -> str:
    return f"followed by {count} {'person' if count == 1 else 'people'} you follow"


@hookimpl
def register_rankers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``friends-of-friends``."""
    register("friends-of-friends", FriendsOfFriends)
