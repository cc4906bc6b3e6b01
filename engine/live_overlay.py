"""What a replica knows beyond its snapshot: the live batches committed after it.

The store stays the system of record; the overlay is a bounded cache of what it already holds
durably, merged with the published snapshot on every request: each user's recent live events
(appended to the snapshot's history, and to what exclude-seen hides), their searches (for a
user tower that reads them) and users' posted attributes. Posted items go to the catalogue
instead (``Recommender.add_items``).
A publish folds the log into a snapshot; the replica then loads it with a fresh overlay that
starts at the snapshot's ``live_seq`` and catches up from the writer before it swaps.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from recengine.feature_store.live_log import LiveChange
from recengine.feature_store.schema import QUERY

MAX_EVENTS_PER_USER = 200  # a user's live events kept (the newest); the snapshot keeps the rest
MAX_USERS = 200_000  # users with live events kept (least recently active dropped first)


@dataclass(frozen=True)
class LiveEvents:
    """One user's live events, oldest first (replaced, never changed in place)."""

    items: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    version: int = 0  # bumped on every new event: a cached user vector older than this is stale

    def added(self, items: list[str], event_types: list[str], times: list[datetime], limit: int) -> LiveEvents:
        """These events and the given newer ones, the last ``limit`` kept (a new object: a
        request reading the old one sees aligned lists)."""
        return LiveEvents((self.items + items)[-limit:], (self.event_types + event_types)[-limit:],
                          (self.times + times)[-limit:], self.version + len(items))


@dataclass
class Applied:
    """What one :meth:`LiveOverlay.apply` changed: users with new events or attributes, and
    the posted item rows (for the catalogue)."""

    users: set[str]
    items: pl.DataFrame | None


class LiveOverlay:
    """Live events per user and posted user attributes after sequence number ``base_seq``."""

    def __init__(self, base_seq: int = 0, max_events_per_user: int = MAX_EVENTS_PER_USER,
                 max_users: int = MAX_USERS) -> None:
        self.base_seq = base_seq
        self.seq = base_seq  # the last batch applied
        self.max_events_per_user = max_events_per_user
        self.max_users = max_users
        self._events: OrderedDict[str, LiveEvents] = OrderedDict()
        self._attributes: dict[str, dict[str, Any]] = {}
        self._searches: OrderedDict[str, tuple[list[str], list[datetime]]] = OrderedDict()
        self._lock = threading.Lock()
        self.last_applied_at: datetime | None = None

    def apply(self, changes: list[LiveChange]) -> Applied:
        """Merge committed batches (those at or below :attr:`seq` are skipped)."""
        users: set[str] = set()
        item_frames = []
        with self._lock:
            for change in changes:
                if change.seq <= self.seq:
                    continue
                self.seq = change.seq
                self.last_applied_at = change.committed_at
                if change.kind == "events":
                    users.update(self._add_events(change.frame))
                elif change.kind == "users":
                    for row in change.frame.iter_rows(named=True):
                        user_id = row.pop("user_id")
                        row.pop("valid_from", None)
                        self._attributes[user_id] = row
                        users.add(user_id)
                else:
                    item_frames.append(change.frame)
        items = pl.concat(item_frames, how="diagonal_relaxed") if item_frames else None
        return Applied(users, items)

    def _add_events(self, frame: pl.DataFrame) -> set[str]:
        """A batch's events, grouped by user first: each user's lists are copied once per
        batch, not once per event (columns read as Python lists: no polars query per batch).
        Search rows (a ``query``, no item) go to the user's live searches instead."""
        searched: set[str] = set()
        if QUERY in frame.columns:
            searched = self._add_searches(frame.filter(pl.col(QUERY).is_not_null()))
            frame = frame.filter(pl.col(QUERY).is_null())
        by_user: dict[str, tuple[list[str], list[str], list[datetime]]] = {}
        columns = (frame.get_column(name).to_list() for name in ("user_id", "item_id", "event_type", "ts"))
        for user_id, item_id, event_type, ts in zip(*columns, strict=True):
            items, types, times = by_user.get(user_id) or by_user.setdefault(user_id, ([], [], []))
            items.append(item_id)
            types.append(event_type)
            times.append(ts)
        for user_id, (items, types, times) in by_user.items():
            events = self._events.get(user_id) or LiveEvents()
            self._events[user_id] = events.added(items, types, times, self.max_events_per_user)
            self._events.move_to_end(user_id)
        while len(self._events) > self.max_users:
            self._events.popitem(last=False)
        return set(by_user) | searched

    def _add_searches(self, frame: pl.DataFrame) -> set[str]:
        """Searches posted after the snapshot, the newest ``max_events_per_user`` per user."""
        columns = (frame.get_column(name).to_list() for name in ("user_id", QUERY, "ts"))
        for user_id, query, ts in zip(*columns, strict=True):
            queries, times = self._searches.get(user_id, ([], []))
            self._searches[user_id] = ((queries + [query])[-self.max_events_per_user:],
                                       (times + [ts])[-self.max_events_per_user:])  # new lists: readers see pairs
            self._searches.move_to_end(user_id)
        while len(self._searches) > self.max_users:
            self._searches.popitem(last=False)
        return set(frame.get_column("user_id").to_list())

    def searches(self, user_id: str) -> tuple[list[str], list[datetime]]:
        """The user's live searches (queries and times, oldest first); empty lists for none."""
        return self._searches.get(user_id, ([], []))

    def events(self, user_id: str) -> LiveEvents | None:
        return self._events.get(user_id)

    def attributes(self, user_id: str) -> dict[str, Any] | None:
        return self._attributes.get(user_id)

    def version(self, user_id: str) -> int:
        """How many live events the user has had (0: none; cached vectors are current)."""
        events = self._events.get(user_id)
        return 0 if events is None else events.version

    def has_user(self, user_id: str) -> bool:
        return user_id in self._events or user_id in self._attributes

    def seen(self, user_id: str, event_types: list[str] | None) -> list[str]:
        events = self._events.get(user_id)
        if events is None:
            return []
        return [item for item, kind in zip(events.items, events.event_types)
                if event_types is None or kind in event_types]

    def describe(self) -> dict[str, Any]:
        return {"base_seq": self.base_seq, "seq": self.seq, "users": len(self._events)}
