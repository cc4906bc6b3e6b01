"""Corrupt or half-written snapshots and bundles are refused at load with one clear error that
names the artifact, the file and the fault; a serving replica keeps the model it had."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from recengine.bundle import load_bundle
from recengine.cli import cli
from recengine.config import PipelineConfig
from recengine.errors import DataError
from recengine.feature_store import OnlineStore, StoreError
from recengine.feature_store.errors import SnapshotError
from recengine.feature_store.snapshot import CURRENT, version_name
from recengine.pipeline import train_pipeline
from recengine.serve.api import build_api
from recengine.serve.service import RecommendService
from tests.conftest import MF_OVERRIDES, generated_shop

SNAPSHOT = version_name(1)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One small trained bundle and published snapshot root, never damaged themselves."""
    base = tmp_path_factory.mktemp("artifacts")
    generated_shop(base, 120, 80, 2_000, 4, publish=True)
    config = PipelineConfig(name="tiny", domain="ecommerce").with_overrides(
        {**MF_OVERRIDES, "train.epochs": 1, "train.batch_size": 256})
    trained = train_pipeline(base / "store.duckdb", config, base / "models", progress=False)
    return trained.bundle_path, base / "snapshots"


@pytest.fixture
def bundle(built: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the bundle for this test to damage."""
    return Path(shutil.copytree(built[0], tmp_path / "bundle"))


@pytest.fixture
def snapshots(built: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the snapshot root (CURRENT → v000001) for this test to damage."""
    return Path(shutil.copytree(built[1], tmp_path / "snapshots"))


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _garbage(file: Path) -> None:
    file.write_bytes(b"not what was written " * 50)


def _edit_json(file: Path, edit: Callable[[dict], None]) -> None:
    content = json.loads(file.read_text())
    edit(content)
    file.write_text(json.dumps(content))


# -- snapshots --------------------------------------------------------------------------

@pytest.mark.parametrize("file, damage, fragment", [
    ("users.parquet", _truncate, "users.parquet is not readable Parquet (truncated or corrupt)"),
    ("histories.parquet", _garbage, "histories.parquet is not readable Parquet"),
    ("events.parquet", _truncate, "events.parquet is not readable Parquet"),  # read by no lookup
    ("items.parquet", Path.unlink, "items.parquet is missing"),
    ("manifest.json", Path.unlink, "manifest.json is missing"),
    ("manifest.json", _garbage, "manifest.json is not readable JSON"),
    ("manifest.json", lambda f: _edit_json(f, lambda m: m.pop("counts")), "manifest.json lacks field(s) ['counts']"),
])
def test_damaged_snapshot_is_refused_naming_the_file(snapshots: Path, file: str, damage: Callable[[Path], None],
                                                     fragment: str) -> None:
    damage(snapshots / SNAPSHOT / file)
    with pytest.raises(SnapshotError) as caught:
        OnlineStore(snapshots)
    message = str(caught.value)
    assert message.startswith(f"snapshot {snapshots / SNAPSHOT}: ") and fragment in message
    assert isinstance(caught.value, StoreError) and caught.value.__cause__ is None


def test_row_counts_that_disagree_with_the_manifest_are_refused(snapshots: Path) -> None:
    """A Parquet file replaced by another (whole, readable) one is still caught."""
    manifest = snapshots / SNAPSHOT / "manifest.json"
    rows = json.loads(manifest.read_text())["counts"]["users"]
    _edit_json(manifest, lambda m: m["counts"].update(users=rows + 5))
    expected = f"users.parquet has {rows} rows where manifest.json says {rows + 5}"
    with pytest.raises(SnapshotError, match=re.escape(expected)):
        OnlineStore(snapshots)


def test_current_naming_a_missing_version_is_refused(snapshots: Path) -> None:
    (snapshots / CURRENT).write_text("v000099\n")
    with pytest.raises(SnapshotError, match="CURRENT names v000099, which does not exist under") as caught:
        OnlineStore(snapshots)
    assert caught.value.snapshot == str(snapshots) and caught.value.file == CURRENT
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # crosses Ray's process boundary


def test_refresh_onto_a_damaged_snapshot_keeps_the_one_in_use(snapshots: Path) -> None:
    online = OnlineStore(snapshots)
    user = next(iter(online.data.history_index))
    before = online.user(user)
    newer = Path(shutil.copytree(snapshots / SNAPSHOT, snapshots / version_name(2)))
    _edit_json(newer / "manifest.json", lambda m: m.update(version=2))
    _truncate(newer / "histories.parquet")
    (snapshots / CURRENT).write_text(version_name(2))
    with pytest.raises(SnapshotError, match="histories.parquet is not readable Parquet"):
        online.refresh()
    assert online.version == 1 and online.user(user) == before


# -- bundles ----------------------------------------------------------------------------

def _dim_32(config: dict) -> None:
    config["model"]["dim"] = 32


@pytest.mark.parametrize("file, damage, fragment", [
    ("manifest.json", Path.unlink, "manifest.json is missing"),
    ("manifest.json", _garbage, "manifest.json is unreadable (truncated or corrupt?)"),
    ("config.json", Path.unlink, "config.json is missing"),
    ("config.json", _garbage, "config.json is not a valid pipeline config (file: Invalid JSON"),
    ("weights.safetensors", Path.unlink, "weights.safetensors is missing"),
    ("weights.safetensors", _truncate, "weights.safetensors is unreadable (truncated or corrupt?)"),
    ("weights.safetensors", _garbage, "weights.safetensors is unreadable"),
    ("extras.safetensors", _truncate, "extras.safetensors is unreadable"),
    ("ids.json", lambda f: _edit_json(f, lambda ids: ids.pop("items")), "ids.json lacks 'items'"),
    ("items.parquet", _truncate, "items.parquet is unreadable"),
])
def test_damaged_bundle_is_refused_naming_the_file(bundle: Path, file: str, damage: Callable[[Path], None],
                                                   fragment: str) -> None:
    damage(bundle / file)
    with pytest.raises(DataError) as caught:
        load_bundle(bundle)
    message = str(caught.value)
    assert message.startswith(f"bundle {bundle}: ") and fragment in message
    assert "\n" not in message


def test_weights_that_do_not_fit_the_config_name_the_tensor_and_shapes(bundle: Path) -> None:
    """config.json edited to dim 32 while the weights were trained at dim 64."""
    _edit_json(bundle / "config.json", _dim_32)
    with pytest.raises(DataError, match=r"weights\.safetensors does not match config\.json: ") as caught:
        load_bundle(bundle)
    items = len(json.loads((bundle / "ids.json").read_text())["items"]) + 1  # index 0 is padding
    assert (f"tensor 'item_encoder.ids.weight' has shape [{items}, 64], "
            f"the config's model expects [{items}, 32]") in str(caught.value)


# -- serving and the CLI ----------------------------------------------------------------

def test_failed_configure_keeps_serving_the_previous_model(built: tuple[Path, Path], bundle: Path,
                                                           snapshots: Path) -> None:
    good_bundle, good_snapshots = built
    service = RecommendService("ecommerce", {"bundle": str(good_bundle), "snapshot": str(good_snapshots)})
    client = TestClient(build_api("ecommerce", lambda: service))
    user = service.recommender.bundle.users.ids[0]
    answer, model = client.post("/recommend", json={"user_id": user, "k": 5}).json(), client.get("/model").json()
    assert len(answer["items"]) == 5 and model["version"] == 1

    (bundle / "weights.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="weights.safetensors is unreadable"):
        service.configure({"bundle": str(bundle), "snapshot": str(good_snapshots)})
    _truncate(snapshots / SNAPSHOT / "users.parquet")
    with pytest.raises(SnapshotError, match="users.parquet is not readable Parquet"):
        service.configure({"bundle": str(good_bundle), "snapshot": str(snapshots)})

    after = client.post("/recommend", json={"user_id": user, "k": 5})
    assert after.status_code == 200 and {**after.json(), "request_id": None} == {**answer, "request_id": None}
    assert client.get("/model").json() == model
    assert service.recommender.online is not None and service.recommender.online.root == good_snapshots


def test_cli_prints_one_line_for_a_damaged_snapshot_or_bundle(built: tuple[Path, Path], bundle: Path,
                                                               snapshots: Path) -> None:
    good_bundle, _ = built
    _garbage(snapshots / SNAPSHOT / "items.parquet")
    result = CliRunner().invoke(cli, ["recommend", "--user", "u1", "--model", str(good_bundle),
                                      "--snapshot", str(snapshots)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: snapshot {snapshots / SNAPSHOT}: items.parquet is not readable Parquet (truncated or corrupt): "
        "parquet: File out of specification: The file must end with PAR1 or PARE"]

    _edit_json(bundle / "config.json", _dim_32)
    store = good_bundle.parents[2] / "store.duckdb"
    result = CliRunner().invoke(cli, ["evaluate", str(bundle), "--store", str(store)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: bundle {bundle}: weights.safetensors does not match")


# -- a config.json that validates but cannot build its model ------------------------------

@pytest.mark.parametrize("change, fragment", [
    ({"item_encoder": {"name": "no-such-encoder", "params": {}}},
     "unknown encoder 'no-such-encoder'; known encoders: "),
    ({"interactor": {"name": "no-such-interactor", "params": {}}}, "unknown interactor 'no-such-interactor'"),
    ({"interactor": {"name": "dot", "params": {"temperature": 2}}},
     "model.interactor ('dot'): invalid parameters: temperature: Extra inputs are not permitted"),
    ({"interactor": {"name": "attention", "params": {"chunk": "many"}}},
     "model.interactor ('attention'): invalid parameters: chunk: Input should be a valid integer"),
    # no weights of its own, so they would match: it would fail on the first request instead
    ({"interactor": {"name": "attention", "params": {"project": False}}},
     "interactor 'attention' needs a history sequence"),
    ({"user_encoder": {"name": "transformer", "params": {"heads": 3}}}, "dim 64 is not divisible by heads 3"),
    ({"item_encoder": {"name": "transformer", "params": {}}}, "encoder 'transformer' cannot be the item encoder"),
    ({"user_encoder": {"name": "dense", "params": {"field_dim": -1}}},
     "RuntimeError: Trying to create tensor with negative dimension -1"),
])
def test_config_that_cannot_build_its_model_is_refused(bundle: Path, change: dict, fragment: str) -> None:
    _edit_json(bundle / "config.json", lambda config: config["model"].update(change))
    PipelineConfig.model_validate_json((bundle / "config.json").read_text())  # the file itself still validates
    with pytest.raises(DataError) as caught:
        load_bundle(bundle)
    message = str(caught.value)
    assert message.startswith(f"bundle {bundle}: config.json describes a model that cannot be built: ")
    assert fragment in message and "\n" not in message


def test_cli_prints_one_line_for_a_config_that_cannot_build_its_model(built: tuple[Path, Path],
                                                                      bundle: Path) -> None:
    from recengine.plugin_manager import get_plugin_manager  # (imported here: this section was appended)

    _edit_json(bundle / "config.json", lambda config: config["model"].update(
        {"user_encoder": {"name": "no-such-encoder", "params": {}}}))
    store = built[0].parents[2] / "store.duckdb"
    result = CliRunner().invoke(cli, ["evaluate", str(bundle), "--store", str(store)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: bundle {bundle}: config.json describes a model that cannot be built: "
        f"unknown encoder 'no-such-encoder'; known encoders: {', '.join(get_plugin_manager().names('encoders'))}"]


def test_an_unknown_component_is_also_the_unknown_component_error(bundle: Path) -> None:
    """Its plugin may simply not be installed here: code catching UnknownComponentError still does."""
    from recengine.errors import UnknownComponentError  # (imported here: this section was appended)

    _edit_json(bundle / "config.json", lambda config: config["model"].update(
        {"interactor": {"name": "no-such-interactor", "params": {}}}))
    with pytest.raises(UnknownComponentError) as caught:
        load_bundle(bundle)
    assert isinstance(caught.value, DataError) and str(caught.value).startswith(f"bundle {bundle}: config.json ")
    assert (caught.value.family, caught.value.name) == ("interactors", "no-such-interactor")
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # crosses Ray's process boundary
