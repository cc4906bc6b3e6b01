"""Training windows of every user's sequence for ``sequence`` mode, vectorised over users.

Each user's training items (sorted by user, then time) are cut into non-overlapping windows
from the end, so every target is trained once per epoch: inputs ``[L]`` and next-item targets
``[L]``, left-padded with 0. A Python loop over users took three minutes at a million users;
this gathers every window with index arithmetic, a block of windows at a time (memory stays
at the outputs plus one block).
"""

from __future__ import annotations

import numpy as np

__all__ = ["sequence_windows"]

BLOCK_WINDOWS = 1 << 16  # windows gathered at a time


def sequence_windows(users: np.ndarray, items: np.ndarray, weights: np.ndarray,
                     max_history: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(inputs, targets, weights, owners)``: ``[W, L]`` int64, int64, float32 and ``[W]`` owners.

    ``users`` ascend (rows grouped by user, in time order). A user with ``n >= 2`` items has
    ``ceil((n - 1) / L)`` windows, the last one first: window ``j`` ends at item ``n - j * L``
    and starts ``L + 1`` items earlier (or at the first item), its inputs the items before each
    target.
    """
    length = max_history
    users = np.asarray(users, dtype=np.int64)
    counts = np.bincount(users) if users.size else np.zeros(0, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    per_user = np.where(counts >= 2, (counts - 2) // length + 1, 0)
    owners = np.repeat(np.arange(counts.size, dtype=np.int64), per_user)
    within = np.arange(owners.size) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    ends = counts[owners] - within * length  # local index one past the window's last item
    inputs = np.zeros((owners.size, length), dtype=np.int64)
    targets = np.zeros((owners.size, length), dtype=np.int64)
    target_weights = np.zeros((owners.size, length), dtype=np.float32)
    offsets = np.arange(length, dtype=np.int64)
    for begin in range(0, owners.size, BLOCK_WINDOWS):
        block = slice(begin, begin + BLOCK_WINDOWS)
        local = ends[block, None] - length - 1 + offsets[None, :]  # the input's local index; its target is next
        real = local >= 0
        at = np.where(real, starts[owners[block], None] + local, 0)
        inputs[block] = np.where(real, items[at], 0)
        targets[block] = np.where(real, items[at + 1], 0)
        target_weights[block] = np.where(real, weights[at + 1], 0.0)
    return inputs, targets, target_weights, owners
