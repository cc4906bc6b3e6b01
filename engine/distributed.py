"""Data-parallel training on Ray Train: the same ``recengine.train.train`` function on N workers.

The driver prepares the data once (the store is read only here) and exports it as a
training snapshot (Parquet, ``recengine.training_data``) under the run's storage, which every
node sees; each worker reads it and takes its own equal shard of every epoch's shuffle
(a distributed sampler: disjoint, equal-sized), wraps the
model in DDP through ``ray.train.torch.prepare_model``, and reports metrics with a
checkpoint every epoch. A failed worker group restarts from the last checkpoint
(``FailureConfig``); a run started again with the same name resumes from it. The best
weights come back to the driver, which evaluates them and writes a normal model bundle.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.torch import load_file

from recengine.components import EngineError
from recengine.config import PipelineConfig
from recengine.errors import ClusterError, ConfigError
from recengine.pipeline import TrainedPipeline, finish_pipeline, prepare_training
from recengine.ray_env import init_ray
from recengine.train import TrainResult, build_model, train
from recengine.training_data import export_training_data, load_training_data

if TYPE_CHECKING:
    import torch


class DistributedTrainingError(EngineError):
    """Ray Train could not run the job (resources, cluster, or a worker that kept failing)."""


def worker_loop(loop_config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: ``train`` on its shard, reporting every epoch.

    ``train_on_ray`` hands Ray this module attribute, so a test may replace it with a
    wrapper importable in the worker processes (the worker-kill recovery test does)."""
    import ray
    import ray.train
    import ray.train.torch

    config = PipelineConfig.model_validate(loop_config["config"])
    data = load_training_data(loop_config["snapshot"])  # the exported Parquet snapshot on shared storage
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    local = Path(tempfile.mkdtemp(prefix=f"recengine-rank{rank}-"))
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as directory:
            shutil.copytree(directory, local, dirs_exist_ok=True)

    def report(record: dict[str, Any], _model: Any) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(local)) if rank == 0 else None
        ray.train.report(record, checkpoint=checkpoint)

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(
            module, move_to_device=False, parallel_strategy_kwargs={"find_unused_parameters": True})

    train(config, data, checkpoint_dir=local, resume=True, progress=False, report=report,
          shard=(rank, world), wrap_model=wrap)


def check_address(address: str | None, timeout: float = 3.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (Ray would retry for a long time)."""
    if not address or address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"Ray address {address!r} is not auto, host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None


def check_resources(workers: int, cpus_per_worker: float, gpus_per_worker: float) -> None:
    """Refuse a request the cluster can never satisfy (Ray Train would wait forever)."""
    import ray

    available = ray.cluster_resources()
    need_cpu, need_gpu = workers * cpus_per_worker, workers * gpus_per_worker
    if need_cpu > available.get("CPU", 0) + 1e-9:
        raise DistributedTrainingError(
            f"{workers} worker(s) × {cpus_per_worker} CPU need {need_cpu:g} CPUs but the cluster has "
            f"{available.get('CPU', 0):g}; use fewer --workers or a smaller --cpus-per-worker")
    if need_gpu > available.get("GPU", 0) + 1e-9:
        raise DistributedTrainingError(
            f"{workers} worker(s) × {gpus_per_worker} GPU need {need_gpu:g} GPUs but the cluster has "
            f"{available.get('GPU', 0):g}")


def train_on_ray(store_path: str | Path, config: PipelineConfig, models: str | Path | None = None, *,
                 workers: int = 2, address: str | None = None, cpus_per_worker: float = 1.0,
                 gpus_per_worker: float = 0.0, run_name: str | None = None, storage: str | Path | None = None,
                 max_failures: int = 2) -> TrainedPipeline:
    """Train ``config`` data-parallel on ``workers`` Ray Train workers, then evaluate and save
    a bundle like a local run. ``storage`` must be visible to every node (shared storage)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if gpus_per_worker > 0 and config.train.device == "cpu":
        raise ConfigError("--gpus-per-worker needs a CUDA device; drop --device cpu")
    data, snapshot_version = prepare_training(store_path, config)
    check_address(address)
    init_ray(address)
    check_resources(workers, cpus_per_worker, gpus_per_worker)
    storage_path = Path(storage or Path(models or "models").resolve() / ".ray-train").resolve()
    name = run_name or f"{config.name}-ray"
    # workers read the same Parquet snapshot a single-GPU run uses (recengine.train_standalone),
    # from storage every node sees; each takes its equal shard of every epoch's shuffle
    snapshot = export_training_data(data, storage_path / name / "training-snapshot")
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"config": config.model_dump(), "snapshot": str(snapshot)},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=str(storage_path),
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    started = time.perf_counter()
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray wraps worker errors; say which run failed and why
        raise DistributedTrainingError(f"Ray Train run {name!r} failed: {exc}") from exc
    if result.checkpoint is None:
        raise DistributedTrainingError(f"Ray Train run {name!r} reported no checkpoint")
    model = build_model(config, data)
    with result.checkpoint.as_directory() as directory:
        model.load_state_dict(load_file(str(Path(directory) / "best.safetensors")))
        state = json.loads((Path(directory) / "checkpoint.json").read_text())["state"]
    model.eval()
    outcome = TrainResult(model=model, best_epoch=state["best_epoch"], best_valid=state["best_valid"],
                          history=state["history"], mode=f"ray x{workers}")
    return finish_pipeline(store_path, config, models, data, outcome, snapshot_version,
                           time.perf_counter() - started,
                           {"backend": "ray", "workers": workers, "run_name": name, "storage": str(storage_path)})
