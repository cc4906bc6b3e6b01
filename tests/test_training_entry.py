"""The one way into training: validate the config, prepare the store read-only, weigh events alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recengine.config import PipelineConfig
from recengine.dataset import merged_event_weights
from recengine.errors import UnknownComponentError
from recengine.feature_store import FeatureStore
from recengine.pipeline import prepare_training
from tests.conftest import MF_OVERRIDES, generated_shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_shop(tmp_path_factory.mktemp("entry"), 200, 100, 4_000, 5)


def test_config_event_weights_overlay_the_domain_defaults() -> None:
    config = PipelineConfig(name="w").with_overrides({"train.event_weights": {"cart": 10.0, "share": 2.0}})
    domain = {"view": 1.0, "cart": 3.0, "purchase": 5.0}
    assert merged_event_weights(config, domain) == {"view": 1.0, "cart": 10.0, "purchase": 5.0, "share": 2.0}
    assert merged_event_weights(config) == {"cart": 10.0, "share": 2.0}
    assert domain == {"view": 1.0, "cart": 3.0, "purchase": 5.0}  # the domain's own table is left alone


def test_prepare_training_uses_domain_weights_and_reports_the_snapshot(shop: Path) -> None:
    config = PipelineConfig(name="entry", domain="ecommerce").with_overrides(
        {**MF_OVERRIDES, "train.event_weights": {"purchase": 7.0}})
    data, snapshot_version = prepare_training(shop, config)
    with FeatureStore(shop, read_only=True) as store:
        assert snapshot_version == store.stats()["snapshot_version"]
    # ecommerce weighs view 1 and cart 3; the config's override replaces purchase's 5
    assert set(np.unique(data.interactions.weights).round(3)) == {1.0, 3.0, 7.0}


def test_prepare_training_checks_components_before_opening_the_store(tmp_path: Path) -> None:
    config = PipelineConfig(name="bad").with_overrides({"model.user_encoder": {"name": "no-such-encoder"}})
    with pytest.raises(UnknownComponentError, match="no-such-encoder"):
        prepare_training(tmp_path / "absent.duckdb", config)
    assert not (tmp_path / "absent.duckdb").exists()
