"""Rank the test users of one split with several bundles and the popularity baseline, and pair
them user by user: the numbers every report (``recengine evaluate --report``, ``recengine
compare``) is drawn from.

The split is the first bundle's (its protocol, split seed and fold, on the store's current
data); every bundle ranks it with its own id maps, so an item a bundle never saw cannot be
recommended by it. The popularity baseline counts the first bundle's training events. Paired
tests compare each other run with the first bundle on the users both evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recengine.bundle import Bundle
from recengine.data import build_interactions
from recengine.dataset import attach_searches, merged_event_weights, needs_event_times
from recengine.errors import DataError
from recengine.eval_sample import sample_user_ids, subset_eval_set
from recengine.evaluate import model_scorer, popularity_scorer, rank_eval_set, training_catalogue
from recengine.metrics import paired_test
from recengine.pipeline import domain_event_weights
from recengine.report.evaluation import RankedRun
from recengine.split_record import split_fingerprint
from recengine.store_access import readable_store
from recengine.training_data import EvalSet, Interactions

__all__ = ["K_MAX", "Progress", "ReportData", "collect"]

#: The metric@K curves run K = 1 … K_MAX (capped at the catalogue).
K_MAX = 50

#: ``start(label, users)`` opens a progress task for one run and returns its ``advance(n)``.
Progress = Callable[[str, int], Callable[[int], None]]


@dataclass
class ReportData:
    """Every run on the split, the paired comparisons against the first and where it all came from."""

    runs: list[RankedRun]
    paired: list[dict[str, Any]]
    split: dict[str, Any]
    store: str
    paired_metric: str
    segment_edges: tuple[int, int]
    tail_fraction: float
    notes: list[str] = field(default_factory=list)

    @property
    def bundles(self) -> list[RankedRun]:
        return [run for run in self.runs if run.kind == "bundle"]


def _interactions(bundle: Bundle, split: Any, protocol: str) -> Interactions:
    config = bundle.config
    return build_interactions(split, bundle.users, bundle.items, protocol,
                              merged_event_weights(config, domain_event_weights(config)),
                              config.train.weight_by_value, config.model.max_history,
                              with_times=needs_event_times(config))


def _history_lengths(interactions: Interactions, users: np.ndarray) -> np.ndarray:
    counts = np.bincount(interactions.users, minlength=int(users.max(initial=0)) + 1)
    return counts[users] if users.size else np.zeros(0, dtype=np.int64)


def _split_check(bundle: Bundle, interactions: Interactions, protocol: str) -> dict[str, Any]:
    """Whether this is the split the bundle was trained on, by the fingerprint its manifest holds."""
    recorded = bundle.manifest.get("split") or {}
    now = split_fingerprint(interactions)
    same_split = (recorded.get("protocol"), recorded.get("seed")) == (protocol, bundle.config.train.split_seed)
    if not recorded.get("fingerprint"):
        verdict = "unknown: the bundle predates split fingerprints"
    elif not same_split:
        verdict = f"different split: trained on protocol {recorded.get('protocol')}, evaluated on {protocol}"
    elif recorded["fingerprint"] == now:
        verdict = "the same split as at training: these numbers reproduce the bundle's evaluation"
    else:
        verdict = "the store has changed since training: the split differs, numbers reflect the current store"
    return {"recorded": recorded.get("fingerprint"), "now": now, "reproduced": recorded.get("fingerprint") == now,
            "verdict": verdict}


def _sampled(bundle: Bundle, test: EvalSet, sample: set[str] | None) -> EvalSet:
    if sample is None:
        return test
    ids = bundle.users.decode(test.users)
    return subset_eval_set(test, np.array([row for row, user in enumerate(ids) if user in sample], dtype=np.int64))


def _bundle_run(bundle: Bundle, label: str, split: Any, protocol: str, k_max: int, progress: Progress | None,
                sample: set[str] | None = None,
                interactions: Interactions | None = None) -> tuple[RankedRun, Interactions, EvalSet]:
    interactions = interactions or _interactions(bundle, split, protocol)
    test = _sampled(bundle, interactions.test, sample)
    if len(test) == 0:
        raise DataError(f"{label}: no test user of this split is known to the bundle: nothing to evaluate")
    advance = progress(label, len(test)) if progress else None
    ranking = rank_eval_set(model_scorer(bundle.model), test, k_max, with_auc=True, advance=advance)
    catalogue = training_catalogue(interactions, len(bundle.items))
    model = bundle.config.model
    info = {"path": str(bundle.path), "name": bundle.name, "version": bundle.version,
            "created_at": bundle.manifest.get("created_at"), "domain": bundle.config.domain,
            "user_encoder": model.user_encoder.name, "item_encoder": model.item_encoder.name,
            "interactor": model.interactor.name, "objective": bundle.config.train.objective,
            "train_seed": bundle.config.train.seed, "split_seed": bundle.config.train.split_seed,
            "store_snapshot_version": bundle.manifest.get("store_snapshot_version"),
            "trained_test": bundle.metrics.get("test", {}),
            "split_check": _split_check(bundle, interactions, protocol)}
    run = RankedRun(label=label, kind="bundle", ranking=ranking, positives=test.positives,
                    user_ids=list(bundle.users.decode(test.users)),
                    history_lengths=_history_lengths(interactions, test.users), catalogue=catalogue,
                    history=list(bundle.metrics.get("history", [])), best_epoch=bundle.metrics.get("best_epoch"),
                    info=info)
    return run, interactions, test


def _popularity_run(first: RankedRun, test: EvalSet, k_max: int, progress: Progress | None) -> RankedRun:
    advance = progress("popularity", len(test)) if progress else None
    ranking = rank_eval_set(popularity_scorer(first.catalogue.popularity), test, k_max, with_auc=True,
                            advance=advance)
    return RankedRun(label="popularity", kind="baseline", ranking=ranking, positives=test.positives,
                     user_ids=first.user_ids, history_lengths=first.history_lengths, catalogue=first.catalogue,
                     info={"note": f"every item scored by its training events in {first.label}'s split"})


def _paired(first: RankedRun, other: RankedRun, metric: str) -> dict[str, Any]:
    ours, theirs = other.per_user(metric), first.per_user(metric)
    shared = sorted(set(ours) & set(theirs))
    row: dict[str, Any] = {"run": other.label, "against": first.label, "metric": metric, "users": len(shared)}
    if len(shared) < 2:
        return {**row, "note": f"{len(shared)} shared test users: no paired test"}
    test = paired_test(np.array([ours[u] for u in shared]), np.array([theirs[u] for u in shared]))
    return {**row, **{key: value for key, value in test.items() if key != "n"}}


def collect(bundles: Sequence[tuple[str, Bundle]], store_path: str | Path, *, protocol: str | None = None,
            paired_metric: str = "ndcg@10", segment_edges: tuple[int, int] = (10, 50), tail_fraction: float = 0.8,
            k_max: int = K_MAX, sample_users: int | None = None, progress: Progress | None = None) -> ReportData:
    """Rank the first bundle's split with every bundle and popularity; pair each run with the first.
    ``sample_users``: rank only that many of the first bundle's test users (seeded, the same users
    for every run)."""
    if not bundles:
        raise DataError("a report needs at least one bundle")
    first_label, first_bundle = bundles[0]
    config = first_bundle.config
    protocol = protocol or config.train.protocol
    if protocol == "rating":
        raise DataError(f"{first_label} uses the rating protocol: a report ranks items (pass --protocol seq or gen)")
    with readable_store(store_path) as store:
        split = store.split(protocol, seed=config.train.split_seed, fold=config.train.fold, folds=config.train.folds)
        attach_searches(store, *(bundle for _, bundle in bundles))
    runs, notes = [], []
    first_interactions = _interactions(first_bundle, split, protocol)
    all_users = len(first_interactions.test)
    sample = None
    if sample_users is not None and sample_users < all_users:
        sample = sample_user_ids(first_bundle.users.decode(first_interactions.test.users), sample_users)
        notes.append(f"a seeded sample of {len(sample):,} of the {all_users:,} test users (seed 0), the same "
                     f"users for every run")
    first, _, first_test = _bundle_run(first_bundle, first_label, split, protocol, k_max, progress, sample,
                                       first_interactions)
    runs.append(first)
    for label, bundle in bundles[1:]:
        run, _, _ = _bundle_run(bundle, label, split, protocol, k_max, progress, sample)
        runs.append(run)
        if bundle.config.train.protocol != protocol:
            notes.append(f"{label} was trained for protocol {bundle.config.train.protocol}; "
                         f"it is evaluated on {first_label}'s {protocol} split here")
    runs.append(_popularity_run(first, first_test, k_max, progress))
    if first.k_max < k_max:
        notes.append(f"the catalogue ranks {first.num_items} items: curves stop at K = {first.k_max}")
    paired = [_paired(first, run, paired_metric) for run in runs[1:]]
    split_info = {"protocol": protocol, "seed": config.train.split_seed, "fold": config.train.fold,
                  "folds": config.train.folds, "test_users": len(first_test), "all_test_users": all_users,
                  "train_events": int(first_interactions.users.size)}
    return ReportData(runs=runs, paired=paired, split=split_info, store=str(Path(store_path).resolve()),
                      paired_metric=paired_metric, segment_edges=segment_edges, tail_fraction=tail_fraction,
                      notes=notes)
