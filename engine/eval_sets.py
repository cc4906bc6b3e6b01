"""Evaluation sets from a split's rows, vectorised over users.

A Python loop over users (a ``setdiff1d`` and a few ``unique`` per user) took six minutes at a
million users; these build the same histories, positives and exclusions with whole-array sorts
and one slicing pass, in seconds. The rules are :func:`recengine.data.build_interactions`'s:

- P-seq: a user's history is every earlier event in time order up to the phase's first target
  (the validation target joins the test history); excluded are the history's items that are not
  targets;
- P-gen / P-cold / P-rating: the history is the training items (for test, then the validation
  items), which are also excluded from ranking, as RecBole does.
"""

from __future__ import annotations

import numpy as np

from recengine.training_data import EvalSet

__all__ = ["PHASES", "build_eval_set"]

#: Split labels by phase code; any other label is code ``len(PHASES)`` (kept in P-seq histories).
PHASES = ("train", "valid", "test")


def _pieces(values: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """``values`` cut into consecutive pieces of ``counts`` (views, not copies)."""
    ends = np.cumsum(counts).tolist()
    starts = [0, *ends[:-1]]
    return [values[a:b] for a, b in zip(starts, ends)]


def _per_user(users: np.ndarray, values: np.ndarray, targets: np.ndarray, size: int) -> list[np.ndarray]:
    """``values`` (grouped by ascending ``users``) as one array per user of ``targets``, empty where none."""
    counts = np.bincount(users, minlength=size)[targets]
    return _pieces(values, counts)


def _unique_pairs(users: np.ndarray, items: np.ndarray, base: int) -> np.ndarray:
    """Sorted distinct ``user * base + item`` keys."""
    return np.unique(users * base + items)


def build_eval_set(users: np.ndarray, items: np.ndarray, phases: np.ndarray, which: str, protocol: str,
                   max_history: int, times: np.ndarray | None = None) -> EvalSet:
    """The ``which`` phase's eval set from rows sorted by user then time (``phases``: codes of
    :data:`PHASES`); users without a target in that phase are left out, the rest ascend.

    With ``times`` (epoch seconds per row) the set also carries each history's times and each
    user's query time, the time of the user's first target event of the phase."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    code = PHASES.index(which)
    is_target = phases == code
    target_users = np.unique(users[is_target])
    if target_users.size == 0:
        empty = None if times is None else np.zeros(0, dtype=np.int64)
        return EvalSet(np.zeros(0, dtype=np.int64), [], [], [], history_times=None if times is None else [],
                       query_times=empty)
    size = int(users.max()) + 1
    base = int(items.max()) + 1
    target_keys = _unique_pairs(users[is_target], items[is_target], base)
    positives = _per_user(target_keys // base, target_keys % base, target_users, size)
    if protocol == "seq":
        histories, exclude, rows = _sequential(users, items, is_target, target_keys, target_users, size, base,
                                               max_history)
    else:
        histories, exclude, rows = _trained(users, items, phases, code, target_users, size, base, max_history)
    eval_set = EvalSet(target_users, histories, positives, exclude)
    if times is not None:
        times = np.asarray(times, dtype=np.int64)
        target_rows = np.flatnonzero(is_target)
        first = target_rows[np.r_[True, users[target_rows][1:] != users[target_rows][:-1]]]  # one per target user
        eval_set.history_times = _per_user(users[rows], times[rows], target_users, size)
        eval_set.query_times = times[first]
    return eval_set


def _sequential(users: np.ndarray, items: np.ndarray, is_target: np.ndarray, target_keys: np.ndarray,
                target_users: np.ndarray, size: int, base: int,
                max_history: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """P-seq: the rows before each user's first target; their last ``max_history`` items, and
    their distinct items that are not targets of the phase (and the histories' row numbers)."""
    rows = np.arange(users.size)
    position = rows - np.searchsorted(users, users, side="left")  # index within the user's rows
    target_rows = np.flatnonzero(is_target)
    first = target_rows[np.r_[True, users[target_rows][1:] != users[target_rows][:-1]]]
    cut = np.full(size, -1, dtype=np.int64)  # per user: position of the first target (-1: no target)
    cut[users[first]] = position[first]
    before = position < cut[users]
    recent = before & (position >= cut[users] - max_history)
    histories = _per_user(users[recent], items[recent], target_users, size)
    seen = _unique_pairs(users[before], items[before], base)
    seen = seen[~np.isin(seen, target_keys, assume_unique=True)]
    return histories, _per_user(seen // base, seen % base, target_users, size), np.flatnonzero(recent)


def _trained(users: np.ndarray, items: np.ndarray, phases: np.ndarray, code: int, target_users: np.ndarray,
             size: int, base: int, max_history: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """P-gen and kin: the training rows (for test, then the validation rows) of each user with a
    target; their last ``max_history`` items, and their distinct items (and the histories' rows)."""
    wanted = np.zeros(size, dtype=bool)
    wanted[target_users] = True
    kept = wanted[users] & ((phases == 0) | ((phases == 1) & (code == 2)))
    rows = np.flatnonzero(kept)
    # training rows first, then validation rows, each in time order (a stable sort by user, phase)
    rows = rows[np.argsort(users[rows] * 2 + (phases[rows] == 1), kind="stable")]
    history_users, history_items = users[rows], items[rows]
    counts = np.bincount(history_users, minlength=size)
    from_end = counts[history_users] - (np.arange(rows.size) - np.searchsorted(history_users, history_users))
    recent = from_end <= max_history
    histories = _per_user(history_users[recent], history_items[recent], target_users, size)
    seen = _unique_pairs(history_users, history_items, base)
    return histories, _per_user(seen // base, seen % base, target_users, size), rows[recent]
