"""Per-segment breakdowns: users by history length, items by popularity decile.

A model that only helps heavy users, or only ever finds blockbusters, shows it here. Users are
bucketed by their number of training events: cold (at most ``edges[0]``), light (up to
``edges[1]``) and heavy (more). Items are split into ten equal-size groups by training
popularity (ties by lower index): decile 1 the least popular tenth of the catalogue, decile 10
the most popular.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recengine.metrics import positives_matrix

__all__ = ["DEFAULT_USER_EDGES", "UserSegment", "item_deciles", "per_decile", "user_segments"]

#: Training events: cold ≤ 10 < light ≤ 50 < heavy.
DEFAULT_USER_EDGES: tuple[int, int] = (10, 50)


@dataclass(frozen=True)
class UserSegment:
    """One bucket of users by history length, with the users' rows in the evaluation."""

    name: str
    low: int  # inclusive
    high: int | None  # inclusive; None: no upper bound
    rows: np.ndarray

    @property
    def label(self) -> str:
        bound = f"{self.low}–{self.high}" if self.high is not None else f"> {self.low - 1}"
        if self.low == 0 and self.high is not None:
            bound = f"≤ {self.high}"
        return f"{self.name} ({bound} events)"


def user_segments(history_lengths: np.ndarray, edges: Sequence[int] = DEFAULT_USER_EDGES) -> list[UserSegment]:
    """Cold / light / heavy users by their number of training events (``edges`` = the two upper
    bounds of cold and light, increasing and non-negative)."""
    cold, light = (int(edge) for edge in edges)
    if not 0 <= cold < light:
        raise ValueError(f"segment edges must be two increasing non-negative counts, got {tuple(edges)}")
    lengths = np.asarray(history_lengths, dtype=np.int64)
    return [
        UserSegment("cold", 0, cold, np.nonzero(lengths <= cold)[0]),
        UserSegment("light", cold + 1, light, np.nonzero((lengths > cold) & (lengths <= light))[0]),
        UserSegment("heavy", light + 1, None, np.nonzero(lengths > light)[0]),
    ]


def item_deciles(popularity: np.ndarray) -> np.ndarray:
    """``[N + 1]`` int: each item's popularity decile, 1 (least popular tenth) … 10; 0 for padding."""
    pop = np.asarray(popularity, dtype=np.float64)[1:]
    order = np.lexsort((np.arange(pop.size), pop))
    deciles = np.zeros(pop.size + 1, dtype=np.int64)
    deciles[order + 1] = np.minimum(np.arange(pop.size) * 10 // max(pop.size, 1), 9) + 1
    return deciles


def per_decile(top: np.ndarray, positives: Sequence[np.ndarray], deciles: np.ndarray, k: int) -> list[dict[str, float]]:
    """For each popularity decile 1…10: its share of the held-out positives, the share of those
    positives found in the users' top ``k`` (recall of that decile's items), and its share of the
    recommended slots -- a model biased to the head fills its slots from decile 10."""
    items = np.asarray(top, dtype=np.int64)[:, :k]
    pos_index, _ = positives_matrix(items, positives)
    flat = (np.concatenate([np.unique(np.asarray(p, dtype=np.int64)) for p in positives]) if len(positives)
            else np.zeros(0, dtype=np.int64))
    pos_deciles = deciles[flat]
    shown = items[items > 0]
    hit_deciles = deciles[items[pos_index]]
    rows = []
    for decile in range(1, 11):
        held_out = int((pos_deciles == decile).sum())
        found = int((hit_deciles == decile).sum())
        rows.append({
            "decile": decile,
            "positives": held_out,
            "positive_share": held_out / pos_deciles.size if pos_deciles.size else math.nan,
            f"recall@{k}": found / held_out if held_out else math.nan,
            "slot_share": float((deciles[shown] == decile).sum() / shown.size) if shown.size else math.nan,
        })
    return rows
