"""A seeded sample of an evaluation split's users, the same users for every bundle that ranks it.

At a million users a full evaluation ranks the whole catalogue a million times; a 10k-user
sample estimates every metric with a standard error a hundred times smaller than its spread,
and the paired tests stay paired because every bundle ranks the same sampled users.

Training samples the same way (``train.valid_users``, ``train.test_users``): validation ranks
the same users after every epoch (drawn with ``split_seed``), and the end-of-training test
ranks the users ``recengine evaluate --sample-users N`` ranks (seed :data:`EVALUATE_SEED`), so
the bundle's test metrics are what a later sampled evaluation of the same split reproduces.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from recengine.training_data import EvalSet, Interactions, PreparedData

if TYPE_CHECKING:  # annotations only: the config imports the plugin manager
    from recengine.config import TrainConfig

__all__ = ["EVALUATE_SEED", "sample_eval_set", "sample_rows", "sample_user_ids", "sampled_for_test",
           "sampled_for_validation", "subset_eval_set"]

#: The seed of ``recengine evaluate --sample-users`` (and of training's test sample).
EVALUATE_SEED = 0


def sample_user_ids(user_ids: Iterable[str], size: int, seed: int = EVALUATE_SEED) -> set[str]:
    """``size`` of ``user_ids`` drawn without replacement by a seeded generator over the sorted
    ids (all of them when there are no more than ``size``)."""
    ordered = sorted(set(user_ids))
    if size >= len(ordered):
        return set(ordered)
    rng = np.random.default_rng(seed)
    return {ordered[i] for i in rng.choice(len(ordered), size=size, replace=False)}


def subset_eval_set(eval_set: EvalSet, rows: np.ndarray) -> EvalSet:
    """The users at ``rows`` of ``eval_set``: every per-user field (arrays and lists of the split's
    length) cut to those rows, split-wide fields (the cold candidates) kept."""
    index = np.asarray(rows, dtype=np.int64)
    users = len(eval_set)
    cut: dict[str, Any] = {}
    for field in fields(eval_set):
        value = getattr(eval_set, field.name)
        if isinstance(value, np.ndarray) and field.name != "candidates" and value.shape[:1] == (users,):
            cut[field.name] = value[index]
        elif isinstance(value, list) and len(value) == users:
            cut[field.name] = [value[i] for i in index.tolist()]
    return replace(eval_set, **cut)


def sample_rows(users: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Rows of an eval set (one per user, dense indices ``users``) holding ``size`` users drawn like
    :func:`sample_user_ids` draws over the sorted ids, in row order (every row when ``size`` covers them).

    Dense indices number the sorted external ids (``IdMap``), so ascending indices are the sorted
    ids: the same seed picks the same users here as ``sample_user_ids`` over the decoded ids.
    """
    users = np.asarray(users, dtype=np.int64)
    if size >= users.size:
        return np.arange(users.size, dtype=np.int64)
    order = np.argsort(users, kind="stable")
    rng = np.random.default_rng(seed)
    return np.sort(order[rng.choice(users.size, size=size, replace=False)])


def sample_eval_set(eval_set: EvalSet, size: int | None, seed: int) -> EvalSet:
    """``eval_set`` cut to a seeded sample of ``size`` users (itself when ``size`` is None or covers it)."""
    if size is None or size >= len(eval_set):
        return eval_set
    return subset_eval_set(eval_set, sample_rows(eval_set.users, size, seed))


def sampled_for_validation(interactions: Interactions, train: TrainConfig) -> Interactions:
    """What per-epoch validation ranks: ``train.valid_users`` validation users drawn with
    ``split_seed`` (the same users every epoch and every run of the split), or all of them."""
    valid = sample_eval_set(interactions.valid, train.valid_users, train.split_seed)
    return interactions if valid is interactions.valid else replace(interactions, valid=valid)


def sampled_for_test(data: PreparedData, train: TrainConfig) -> PreparedData:
    """What the end-of-training test ranks: ``train.test_users`` test users drawn with
    :data:`EVALUATE_SEED` (the users ``recengine evaluate --sample-users`` ranks), or all of them."""
    inter = data.interactions
    test = sample_eval_set(inter.test, train.test_users, EVALUATE_SEED)
    return data if test is inter.test else replace(data, interactions=replace(inter, test=test))
