"""Ray Train: the engine's train function data-parallel, recovery, resume, errors, two nodes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from recengine import distributed
from recengine.cli import cli
from recengine.config import PipelineConfig
from recengine.distributed import DistributedTrainingError, train_on_ray
from recengine.distributed import worker_loop as engine_worker_loop
from recengine.pipeline import train_pipeline
from recengine.recommender import Recommender
from tests.conftest import MF_OVERRIDES, generated_shop

pytestmark = pytest.mark.ray

MF = {**MF_OVERRIDES, "train.batch_size": 256}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_shop(tmp_path_factory.mktemp("dist"), 300, 200, 12_000, 2)


def test_two_workers_match_local_and_bundle_serves(store: Path, tmp_path: Path, ray_cluster) -> None:  # type: ignore[no-untyped-def]
    config = PipelineConfig(name="dist").with_overrides({**MF, "train.epochs": 4})
    local = train_pipeline(store, config, tmp_path / "models", progress=False)
    distributed = train_on_ray(store, config, tmp_path / "models", workers=2, cpus_per_worker=0.5,
                               run_name="match")
    a, b = local.metrics["valid"]["ndcg@10"], distributed.metrics["valid"]["ndcg@10"]
    assert abs(a - b) < max(0.02, 0.35 * a), (a, b)
    assert distributed.metrics["history"][-1]["workers"] == 2
    recommender = Recommender.load(distributed.bundle_path)
    assert len(recommender.recommend(recommender.bundle.users.ids[0], 5)) == 5
    assert recommender.bundle.manifest["backend"] == "ray"


CRASH_AT_EPOCH = 2


def loop_that_dies_once(loop_config: dict[str, Any]) -> None:
    """The engine's worker loop, except that the last rank kills its own process right after
    reporting epoch ``CRASH_AT_EPOCH`` (its checkpoint saved), the first time only: a marker
    file beside the run's training snapshot remembers the crash across the restart.
    Ray Train imports this function by name in each worker process."""
    import ray.train

    marker = Path(loop_config["snapshot"]).parent / ".crash-marker"
    context = ray.train.get_context()
    last_rank = context.get_world_rank() == context.get_world_size() - 1
    report = ray.train.report

    def report_then_die(metrics: dict[str, Any], **kwargs: Any) -> None:
        report(metrics, **kwargs)
        if last_rank and metrics["epoch"] == CRASH_AT_EPOCH and not marker.exists():
            marker.write_text("crashed once")
            os._exit(1)

    ray.train.report = report_then_die  # this worker process only
    engine_worker_loop(loop_config)


def test_killed_worker_resumes_from_checkpoint(store: Path, tmp_path: Path, ray_cluster,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "worker_loop", loop_that_dies_once)
    config = PipelineConfig(name="crash").with_overrides({**MF, "train.epochs": 3})
    out = train_on_ray(store, config, tmp_path / "models", workers=2, cpus_per_worker=0.5, run_name="crash",
                       max_failures=2)
    assert (tmp_path / "models" / ".ray-train" / "crash" / ".crash-marker").exists()  # it did die once
    assert [h["epoch"] for h in out.metrics["history"]] == [1, 2, 3]  # and carried on after epoch 2


def test_same_run_name_resumes(store: Path, tmp_path: Path, ray_cluster) -> None:  # type: ignore[no-untyped-def]
    config = PipelineConfig(name="resume").with_overrides({**MF, "train.epochs": 2})
    first = train_on_ray(store, config, tmp_path / "models", workers=1, cpus_per_worker=0.5, run_name="again")
    assert len(first.metrics["history"]) == 2
    longer = config.with_overrides({"train.epochs": 3})
    second = train_on_ray(store, longer, tmp_path / "models", workers=1, cpus_per_worker=0.5, run_name="again")
    assert [h["epoch"] for h in second.metrics["history"]] == [1, 2, 3]
    assert second.metrics["history"][:2] == first.metrics["history"]  # epochs 1-2 were not re-run


def test_clear_errors_not_hangs(store: Path, tmp_path: Path, ray_cluster) -> None:  # type: ignore[no-untyped-def]
    config = PipelineConfig(name="bad").with_overrides({**MF, "train.epochs": 1})
    started = time.time()
    with pytest.raises(ConnectionError, match="cannot reach the Ray cluster at '127.0.0.1:1'"):
        train_on_ray(store, config, tmp_path, workers=2, address="127.0.0.1:1")
    with pytest.raises(DistributedTrainingError, match="need 16 CPUs but the cluster has 2"):
        train_on_ray(store, config, tmp_path, workers=16)
    result = CliRunner().invoke(cli, ["train", "--store", str(store), "--models", str(tmp_path), "--backend", "ray",
                                      "--workers", "9", "--user-encoder", "dense", "--epochs", "1"])
    assert result.exit_code == 1 and "9 worker(s)" in result.output
    assert time.time() - started < 120


TWO_NODES = textwrap.dedent('''
    import sys
    from ray.cluster_utils import Cluster
    from recengine.config import PipelineConfig, ComponentRef
    from recengine.distributed import train_on_ray
    from recengine.ray_env import ray_environment

    ray_environment()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        config = PipelineConfig(name="two-nodes").with_overrides({
            "model.user_encoder": ComponentRef(name="dense").model_dump(),
            "model.item_encoder": ComponentRef(name="dense").model_dump(),
            "train.objective": "bpr", "train.protocol": "gen", "train.epochs": 2})
        import ray
        out = train_on_ray(sys.argv[1], config, sys.argv[2], workers=2, cpus_per_worker=1.0,
                           address=cluster.address, storage=sys.argv[3])
        nodes = [n for n in ray.nodes() if n["Alive"]]
        print("NODES", len(nodes), "EPOCHS", len(out.metrics["history"]), "BUNDLE", out.bundle_path)
    finally:
        import ray
        ray.shutdown()
        cluster.shutdown()
''')


@pytest.mark.slow
def test_training_across_two_nodes(store: Path, tmp_path: Path) -> None:
    """Two Ray nodes of one CPU each: two one-CPU workers must land on different nodes."""
    run = subprocess.run([sys.executable, "-c", TWO_NODES, str(store), str(tmp_path / "models"),
                          str(tmp_path / "shared-storage")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "NODES 2 EPOCHS 2" in run.stdout, run.stdout[-2000:]
    assert (tmp_path / "models" / "two-nodes" / "1" / "weights.safetensors").exists()
