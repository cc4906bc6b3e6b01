"""Training from an exported snapshot with torch, numpy and pyarrow alone (the GPU path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recengine.cli import cli
from recengine.config import PipelineConfig
from recengine.dataset import prepare
from recengine.errors import DataError
from recengine.feature_store import FeatureStore
from recengine.train import train
from recengine.training_data import export_training_data, load_training_data
from tests.conftest import MF_OVERRIDES, generated_shop

# Imports the standalone run must never need: the GPU machine may not have them. Of the
# feature store it may read only the dependency-free vocabulary (split protocols, errors).
BLOCKER = """
import runpy, sys
LIGHT = {"recengine.feature_store", "recengine.feature_store.protocols", "recengine.feature_store.errors"}
class Block:
    def find_spec(self, name, path=None, target=None):
        store = name.startswith("recengine.feature_store") and name not in LIGHT
        if name.split(".")[0] in {"polars", "duckdb", "ray"} or store:
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Block())
sys.argv = ["recengine.train_standalone", *sys.argv[1:]]
runpy.run_module("recengine.train_standalone", run_name="__main__")
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("standalone")
    generated_shop(base, 300, 200, 12_000, 3)
    return base


def test_snapshot_round_trip_keeps_every_array(shop: Path, tmp_path: Path) -> None:
    config = PipelineConfig(name="rt", domain="ecommerce").with_overrides(MF_OVERRIDES)
    with FeatureStore(shop / "store.duckdb", read_only=True) as store:
        data = prepare(store, config)
    back = load_training_data(export_training_data(data, tmp_path / "snap"))
    a, b = data.interactions, back.interactions
    for name in ("users", "items", "weights", "values"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for left, right in ((a.valid, b.valid), (a.test, b.test)):
        np.testing.assert_array_equal(left.users, right.users)
        for field in ("histories", "positives", "exclude"):
            assert all(np.array_equal(x, y) for x, y in zip(getattr(left, field), getattr(right, field), strict=True))
    for side in ("user_features", "item_features"):
        before, after = getattr(data, side).to_arrays(), getattr(back, side).to_arrays()
        assert before.keys() == after.keys()
        assert all(np.array_equal(before[k], after[k]) for k in before)
        assert getattr(data, side).vocabularies == getattr(back, side).vocabularies
    assert back.items.ids == data.items.ids and back.users.ids == data.users.ids
    np.testing.assert_array_equal(back.popularity, data.popularity)


def test_standalone_training_without_polars_duckdb_or_ray(shop: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "snap"
    flags = ["--store", str(shop / "store.duckdb"), "--domain", "ecommerce", "--user-encoder", "dense",
             "--protocol", "gen", "--objective", "softmax", "--epochs", "3", "--lr", "0.01", "--batch-size", "512",
             "--device", "cpu", "--export-snapshot", str(snapshot)]
    result = CliRunner().invoke(cli, ["train", *flags, "--json"])
    assert result.exit_code == 0, result.output
    expected = {"manifest.json", "config.json", "interactions.parquet", "valid.parquet"}
    assert expected <= {p.name for p in snapshot.iterdir()}

    done = subprocess.run([sys.executable, "-c", BLOCKER, str(snapshot), "--quiet", "--precision", "bf16"],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["device"] == "cpu" and summary["precision"] == "bf16"
    metrics = json.loads((snapshot / "result" / "metrics.json").read_text())
    assert (snapshot / "result" / "weights.safetensors").stat().st_size > 0
    assert metrics["test"]["ndcg@10"] > metrics["popularity"]["ndcg@10"]

    # the same train() in this process, fp32, on the store's own data: the same model class
    config = PipelineConfig.model_validate_json((snapshot / "config.json").read_text())
    with FeatureStore(shop / "store.duckdb", read_only=True) as store:
        local = train(config, prepare(store, config), progress=False)
    assert metrics["valid"]["ndcg@10"] == pytest.approx(local.best_valid["ndcg@10"], abs=0.05)


def test_not_a_snapshot_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DataError, match="not a training snapshot"):
        load_training_data(tmp_path)
    from recengine.train_standalone import main

    assert main([str(tmp_path), "--quiet"]) == 2
    assert "export with `recengine train" in capsys.readouterr().err
