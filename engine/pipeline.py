"""End-to-end jobs on a store: train → evaluate → save a bundle, and re-evaluate a bundle.

The CLI, the quick start, the examples and the benchmarks all go through these functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recengine.bundle import Bundle, save_bundle
from recengine.config import PipelineConfig, validate_components
from recengine.data import build_interactions
from recengine.dataset import PreparedData, attach_searches, merged_event_weights, needs_event_times, prepare
from recengine.disk_space import disk_full_is_engine_error
from recengine.eval_sample import sampled_for_test
from recengine.evaluate import evaluate_interactions, run_metrics
from recengine.plugin_manager import get_plugin_manager
from recengine.split_record import split_record
from recengine.store_access import readable_store
from recengine.train import TrainResult, train
from recengine.training_data import export_training_data


@dataclass
class TrainedPipeline:
    bundle_path: Path
    metrics: dict[str, Any]
    result: TrainResult
    data: PreparedData


def domain_event_weights(config: PipelineConfig) -> dict[str, float]:
    """The configured domain's default event weights (none without a domain)."""
    if not config.domain:
        return {}
    return dict(get_plugin_manager().domain(config.domain).event_weights)


def prepare_training(store_path: str | Path, config: PipelineConfig) -> tuple[PreparedData, int]:
    """What every training run starts from (local, Ray, exported snapshot): check the config's
    components, then prepare the store's data read-only with the domain's event weights.
    Returns the data and the store snapshot version it was read at."""
    validate_components(config)
    with readable_store(store_path) as store:
        data = prepare(store, config, domain_event_weights(config))
        return data, store.stats()["snapshot_version"]


def train_pipeline(store_path: str | Path, config: PipelineConfig, models: str | Path | None = None, *,
                   progress: bool = True, checkpoint_dir: str | Path | None = None,
                   resume: bool = False) -> TrainedPipeline:
    """Validate the config, prepare the store's data, train locally, evaluate and save a bundle."""
    data, snapshot_version = prepare_training(store_path, config)
    started = time.perf_counter()
    result = train(config, data, progress=progress, checkpoint_dir=checkpoint_dir, resume=resume)
    return finish_pipeline(store_path, config, models, data, result, snapshot_version,
                           time.perf_counter() - started, {"backend": "local"})


def export_training_snapshot(store_path: str | Path, config: PipelineConfig, directory: str | Path) -> Path:
    """Write the prepared training data (Parquet) and the config for ``recengine.train_standalone``."""
    data, _ = prepare_training(store_path, config)
    out = export_training_data(data, directory)
    with disk_full_is_engine_error(out, "the snapshot there has no config.json"):
        (out / "config.json").write_text(config.model_dump_json(indent=1))
    return out


def finish_pipeline(store_path: str | Path, config: PipelineConfig, models: str | Path | None, data: PreparedData,
                    result: TrainResult, snapshot_version: int, train_seconds: float,
                    extra_manifest: dict[str, Any]) -> TrainedPipeline:
    """Evaluate a trained model beside its baselines and write its bundle (local or Ray runs)."""
    assert data.item_frame is not None  # prepared from the store (prepare_training), not an exported snapshot
    metrics = final_metrics(config, data, result, train_seconds)
    bundle_path = save_bundle(
        models, config, result.model, users=data.users, items=data.items,
        user_features=data.user_features, item_features=data.item_features, popularity=data.popularity,
        user_sequences=data.interactions.user_sequences(), item_frame=data.item_frame, metrics=metrics,
        extra_manifest={"store": str(Path(store_path).resolve()), "store_snapshot_version": snapshot_version,
                        "split": split_record(config, data.interactions), "train_seed": config.train.seed,
                        "best_epoch": result.best_epoch, **extra_manifest},
        user_sequence_times=data.interactions.user_sequence_times(),
    )
    return TrainedPipeline(bundle_path, metrics, result, data)


def final_metrics(config: PipelineConfig, data: PreparedData, result: TrainResult,
                 train_seconds: float) -> dict[str, Any]:
    """``run_metrics`` on ``train.test_users`` sampled test users (all without a sample), with the
    split's whole count beside the sample's (``all_test_users``) so a report can say which it is."""
    metrics = run_metrics(config, sampled_for_test(data, config.train), result, train_seconds)
    if config.train.test_users is not None and data.interactions.test_pairs is None:
        metrics["all_test_users"] = len(data.interactions.test)
    return metrics


def evaluate_bundle(bundle: Bundle, store_path: str | Path, protocol: str | None = None,
                    ks: tuple[int, ...] = (10, 20), extended: bool = True) -> dict[str, Any]:
    """Re-evaluate a bundle on the store's current data with its own id maps and split seed
    (``extended``: with GAUC and the beyond-accuracy metrics)."""
    config = bundle.config
    protocol = protocol or config.train.protocol
    with readable_store(store_path) as store:
        split = store.split(protocol, seed=config.train.split_seed, fold=config.train.fold, folds=config.train.folds)
        attach_searches(store, bundle)
    interactions = build_interactions(split, bundle.users, bundle.items, protocol,
                                      merged_event_weights(config, domain_event_weights(config)),
                                      config.train.weight_by_value, config.model.max_history,
                                      with_times=needs_event_times(config))
    popularity = np.bincount(interactions.items, minlength=len(bundle.items) + 1).astype(np.float32)
    return {"protocol": protocol, **evaluate_interactions(bundle.model, popularity, interactions, ks,
                                                          extended=extended)}
