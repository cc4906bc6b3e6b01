"""Two bundles on the same split of the same store, user by user.

Each bundle ranks the split's test users with its own id maps (an item it never saw cannot
be recommended by it: that is the honest cost of an old model), and the per-user NDCG@10 of
the users both know is compared with a paired t-test and a Wilcoxon signed-rank test
(``recengine.metrics.paired_test``). ``recengine retrain`` decides with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recengine.bundle import Bundle
from recengine.data import build_interactions
from recengine.dataset import attach_searches, merged_event_weights, needs_event_times
from recengine.errors import DataError
from recengine.evaluate import evaluate_scorer, model_scorer
from recengine.metrics import paired_test
from recengine.pipeline import domain_event_weights
from recengine.store_access import readable_store

METRIC = "ndcg@10"
ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """Per-user ``metric`` of ``new`` against ``old`` on the users both rank."""

    metric: str
    protocol: str
    users: int
    new_mean: float
    old_mean: float
    mean_diff: float  # new - old
    t_pvalue: float
    wilcoxon_pvalue: float

    @property
    def significantly_worse(self) -> bool:
        return self.mean_diff < 0 and self.t_pvalue < ALPHA

    @property
    def significantly_better(self) -> bool:
        return self.mean_diff > 0 and self.t_pvalue < ALPHA

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "significantly_worse": self.significantly_worse,
                "significantly_better": self.significantly_better}


def per_user_metric(bundle: Bundle, split: Any, protocol: str, metric: str = METRIC) -> dict[str, float]:
    """``metric`` of each test user of ``split`` that ``bundle`` knows, by external user id."""
    config = bundle.config
    interactions = build_interactions(split, bundle.users, bundle.items, protocol,
                                      merged_event_weights(config, domain_event_weights(config)),
                                      config.train.weight_by_value, config.model.max_history,
                                      with_times=needs_event_times(config))
    test = interactions.test
    if len(test) == 0:
        return {}
    _, values = evaluate_scorer(model_scorer(bundle.model), test, (int(metric.split("@")[1]),), True,
                                per_user=metric)
    return {user: float(v) for user, v in zip(bundle.users.decode(test.users), values) if user}


def ranking_split(bundle: Bundle, store_path: str | Path, purpose: str,
                  also: tuple[Bundle, ...] = ()) -> tuple[str, Any]:
    """``bundle``'s protocol and its split of the store (protocol, split seed, fold), for ``purpose``
    ("retrain compares ranking models"); a rating-protocol bundle has no ranking to judge. It and
    the bundles ``also`` judged on that split get the store's current searches (``attach_searches``)."""
    config = bundle.config
    protocol = config.train.protocol
    if protocol == "rating":
        raise DataError(f"{purpose}; a rating-protocol bundle has no per-user ranking metrics")
    with readable_store(store_path) as store:
        split = store.split(protocol, seed=config.train.split_seed, fold=config.train.fold, folds=config.train.folds)
        attach_searches(store, bundle, *also)
    return protocol, split


def compare_bundles(new: Bundle, old: Bundle, store_path: str | Path, metric: str = METRIC) -> Comparison:
    """``new`` against ``old`` on ``new``'s split (its protocol and split seed) of the store."""
    protocol, split = ranking_split(new, store_path, "retrain compares ranking models", also=(old,))
    ours, theirs = per_user_metric(new, split, protocol, metric), per_user_metric(old, split, protocol, metric)
    shared = sorted(set(ours) & set(theirs))
    if len(shared) < 2:
        raise DataError(f"the two bundles share {len(shared)} test users on this store: nothing to compare")
    a = np.array([ours[u] for u in shared])
    b = np.array([theirs[u] for u in shared])
    test = paired_test(a, b)
    return Comparison(metric, protocol, len(shared), test["mean_a"], test["mean_b"], test["mean_diff"],
                      test["t_pvalue"], test["wilcoxon_pvalue"])
