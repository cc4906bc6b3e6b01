"""The whole chain on generated data: store → train → evaluate → bundle → recommend, plus
the CLI and checkpoint resume; and on ml-100k a transformer beats popularity (P-seq)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from recengine.bundle import list_bundles, load_bundle
from recengine.cli import cli
from recengine.config import ComponentRef, PipelineConfig
from recengine.dataset import prepare
from recengine.feature_store import FeatureStore
from recengine.pipeline import evaluate_bundle, train_pipeline
from recengine.recommender import Recommender
from recengine.train import train
from tests.conftest import MF_OVERRIDES, generated_shop

MF = {**MF_OVERRIDES, "train.batch_size": 512}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated e-commerce store."""
    base = tmp_path_factory.mktemp("shop")
    generated_shop(base, 400, 300, 20_000, 1, publish=True)
    return base


@pytest.fixture(scope="module")
def trained(shop: Path):  # type: ignore[no-untyped-def]
    config = PipelineConfig(name="shop-mf", domain="ecommerce").with_overrides({**MF, "train.epochs": 4})
    return train_pipeline(shop / "store.duckdb", config, shop / "models", progress=False)


def test_personalised_model_beats_popularity(trained) -> None:  # type: ignore[no-untyped-def]
    metrics = trained.metrics
    assert metrics["test"]["ndcg@10"] > 1.5 * metrics["popularity"]["ndcg@10"]
    assert set(metrics["test"]) >= {"recall@10", "ndcg@10", "hit@10", "mrr@10", "precision@10", "ndcg@20"}


def test_bundle_round_trip_and_reevaluation(trained, shop: Path) -> None:  # type: ignore[no-untyped-def]
    files = {p.name for p in trained.bundle_path.iterdir()}
    assert {"weights.safetensors", "config.json", "ids.json", "metrics.json", "manifest.json"} <= files
    assert not any(name.endswith((".pt", ".pkl", ".pth")) for name in files)
    bundle = load_bundle(trained.bundle_path)
    again = evaluate_bundle(bundle, shop / "store.duckdb")
    assert again["test"]["ndcg@10"] == pytest.approx(trained.metrics["test"]["ndcg@10"], abs=1e-6)
    assert [b["name"] for b in list_bundles(shop / "models")] == ["shop-mf"]


def test_recommend_with_reasons_and_fallback(trained, shop: Path) -> None:  # type: ignore[no-untyped-def]
    recommender = Recommender.load(trained.bundle_path, snapshot=shop / "snapshots")
    user = recommender.bundle.users.ids[0]
    items = recommender.recommend(user, 10)
    assert len(items) == 10 and len({i.item_id for i in items}) == 10
    assert all(i.reasons and i.reasons[0].startswith("similar to ") for i in items)
    history = set(recommender.online.user(user).history)
    assert not history & {i.item_id for i in items}  # exclude-seen ran
    cold = recommender.recommend("someone-new", 5)
    assert [i.reasons for i in cold] == [["popular"]] * 5
    popular_first = recommender.catalog.item_ids[int(np.argmax(recommender.catalog.popularity))]
    assert cold[0].item_id == popular_first
    with pytest.raises(ValueError, match="k must be at least 1"):
        recommender.recommend(user, 0)


def test_cached_user_vectors_and_ivf_retrieval_answer_like_the_exact_path(trained, shop: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Serving's fast path (every user encoded once, IVF retrieval) returns what the
    per-request encoder and the exact scan return."""
    exact = Recommender.load(trained.bundle_path, snapshot=shop / "snapshots", retrieval="exact")
    cached = Recommender.load(trained.bundle_path, snapshot=shop / "snapshots", retrieval="exact",
                              precompute_users=True)
    assert exact.user_vectors is None and len(cached.user_vectors) >= len(cached.bundle.users)
    assert cached.retrieval_info()["cached_users"] == len(cached.user_vectors)
    users = list(exact.bundle.users.ids[:40])
    for user in users:
        a, b = exact.recommend(user, 10), cached.recommend(user, 10)
        assert [i.item_id for i in a] == [i.item_id for i in b] and [i.reasons for i in a] == [i.reasons for i in b]
        assert [i.score for i in a] == pytest.approx([i.score for i in b], rel=1e-4)
    monkeypatch.setattr("recengine.recommender.MAX_PRECOMPUTED_USERS", 5)
    capped = Recommender.load(trained.bundle_path, snapshot=shop / "snapshots", retrieval="exact",
                              precompute_users=True)
    assert len(capped.user_vectors) == 5
    beyond = next(u for u in users if capped.user_vectors.get(u) is None)  # encoded when asked
    assert [i.item_id for i in capped.recommend(beyond, 10)] == [i.item_id for i in exact.recommend(beyond, 10)]
    ivf = Recommender.load(trained.bundle_path, snapshot=shop / "snapshots", retrieval="ivf", precompute_users=True)
    info = ivf.retrieval_info()
    assert info["kind"] == "ivf" and info["calibrated_recall"] >= 0.95
    overlap = np.mean([len({i.item_id for i in exact.recommend(u, 10)} & {i.item_id for i in ivf.recommend(u, 10)}) / 10
                       for u in users])
    assert overlap >= 0.8


def test_reasons_explain_returned_items_and_fallback_does_not_depend_on_them(trained, shop: Path) -> None:  # type: ignore[no-untyped-def]
    recommender = Recommender.load(trained.bundle_path, snapshot=shop / "snapshots")
    user = recommender.bundle.users.ids[1]
    quiet = recommender.recommend(user, 5, explain=False)
    assert [i.reasons for i in quiet] == [[]] * 5 and quiet.fallback is False
    explained = recommender.recommend(user, 5)
    assert [i.item_id for i in explained] == [i.item_id for i in quiet]
    history = recommender.online.user(user).history
    titles = {recommender.catalog.title(recommender.item_index[h]) for h in history}
    assert all(r.reasons[-1].removeprefix("similar to ") in titles for r in explained)
    unknown = recommender.recommend("someone-new", 4, explain=False)
    assert unknown.fallback is True and len(unknown) == 4 and all(not i.reasons for i in unknown)


def test_attention_pipeline_explains_with_history(shop: Path) -> None:
    config = PipelineConfig(name="shop-att", domain="ecommerce").with_overrides(
        {"model.interactor": ComponentRef(name="attention").model_dump(), "train.epochs": 1,
         "train.negatives": 50, "model.max_history": 20})
    out = train_pipeline(shop / "store.duckdb", config, shop / "models", progress=False)
    assert out.result.mode == "pairs"
    recommender = Recommender.load(out.bundle_path, precompute_users=True)
    assert recommender.user_vectors is None  # attention reads the history sequence: nothing to cache
    items = recommender.recommend(recommender.bundle.users.ids[3], 5)
    assert items and all(i.reasons[0].startswith("attention ") for i in items)


def test_checkpoint_resume_continues(shop: Path, tmp_path: Path) -> None:
    config = PipelineConfig(name="resume").with_overrides({**MF, "train.epochs": 2})
    with FeatureStore(shop / "store.duckdb", read_only=True) as store:
        data = prepare(store, config)
    first = train(config, data, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert [h["epoch"] for h in first.history] == [1, 2]
    longer = config.with_overrides({"train.epochs": 3})
    resumed = train(longer, data, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]  # only epoch 3 ran again


def test_seeded_training_is_deterministic(shop: Path) -> None:
    config = PipelineConfig(name="det").with_overrides({**MF, "train.epochs": 1})
    with FeatureStore(shop / "store.duckdb", read_only=True) as store:
        data = prepare(store, config)
    a = train(config, data, progress=False).history[0]["loss"]
    b = train(config, data, progress=False).history[0]["loss"]
    assert a == b


def test_bf16_mixed_precision_trains_and_fp16_needs_cuda(shop: Path) -> None:
    """bf16 autocast (CPU here; CUDA on GPU machines) learns like fp32: the loss falls and the
    model still beats popularity; fp16 is refused off CUDA with a clear reason."""
    config = PipelineConfig(name="amp").with_overrides({**MF, "train.epochs": 3, "train.patience": 3,
                                                        "train.precision": "bf16", "train.device": "cpu"})
    with FeatureStore(shop / "store.duckdb", read_only=True) as store:
        data = prepare(store, config)
    result = train(config, data, progress=False)
    losses = [h["loss"] for h in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # master weights stay fp32
    fp32 = train(config.with_overrides({"train.precision": "fp32"}), data, progress=False)
    assert result.best_valid["ndcg@10"] > 0.8 * fp32.best_valid["ndcg@10"]
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        train(config.with_overrides({"train.precision": "fp16"}), data, progress=False)


def test_cli_train_evaluate_recommend_models(shop: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    store, models = str(shop / "store.duckdb"), str(tmp_path / "models")
    result = runner.invoke(cli, ["train", "--store", store, "--models", models, "--name", "cli",
                                 "--user-encoder", "dense", "--item-encoder", "dense", "--objective", "bpr",
                                 "--protocol", "gen", "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["test"]["ndcg@10"] > 0
    out = tmp_path / "eval.json"
    result = runner.invoke(cli, ["evaluate", "cli", "--store", store, "--models", models, "--out", str(out)])
    assert result.exit_code == 0 and "popularity" in result.output and json.loads(out.read_text())["test"]
    result = runner.invoke(cli, ["recommend", "--user", "u0000001", "-k", "3", "--models", models, "--json"])
    assert result.exit_code == 0 and len(json.loads(result.output)) == 3
    ivf = runner.invoke(cli, ["recommend", "--user", "u0000001", "-k", "3", "--models", models, "--json",
                              "--retrieval", "ivf"])
    assert ivf.exit_code == 0 and len(json.loads(ivf.output)) == 3
    assert "cli" in runner.invoke(cli, ["models", "list", "--models", models]).output
    bad = runner.invoke(cli, ["train", "--store", store, "--models", models, "--user-encoder", "no-such-encoder"])
    assert bad.exit_code == 1 and "unknown encoder 'no-such-encoder'; known encoders: dense, ease" in bad.output


def test_config_file_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text('name = "x"\n[model]\ndim = 32\n[model.user_encoder]\nname = "dense"\n'
                    '[model.user_encoder.params]\nhidden = [64]\n[train]\nepochs = 2\n')
    config = PipelineConfig.from_toml(path)
    assert config.model.dim == 32 and config.model.user_encoder.params == {"hidden": [64]}
    path.write_text("[train]\nepoks = 2\n")
    with pytest.raises(ValueError, match="epoks"):
        PipelineConfig.from_toml(path)
    from recengine.config import validate_components

    with pytest.raises(ValueError, match=r"model.user_encoder \('dense'\): invalid parameters"):
        validate_components(config.with_overrides({"model.user_encoder.params": {"hiden": [1]}}))
    with pytest.raises(ValueError, match="needs a history sequence"):
        validate_components(config.with_overrides(
            {"model.interactor": {"name": "attention", "params": {}}, "model.user_encoder.params": {}}))


def test_transformer_beats_popularity_on_ml100k(ml100k: Path, tmp_path: Path) -> None:
    with FeatureStore(tmp_path / "ml.duckdb") as store:
        store.ingest_paths([ml100k])
    config = PipelineConfig(name="ml-sas").with_overrides({"train.epochs": 8, "train.batch_size": 128})
    out = train_pipeline(tmp_path / "ml.duckdb", config, tmp_path / "models", progress=False)
    assert out.metrics["test_unmasked"]["ndcg@10"] > out.metrics["popularity_unmasked"]["ndcg@10"]
    assert out.metrics["test"]["ndcg@10"] > out.metrics["popularity"]["ndcg@10"]


def test_rating_protocol_mse_beats_mean(shop: Path, tmp_path: Path) -> None:
    """P-rating: k-fold split in SQL, MSE objective, RMSE/MAE beside the mean-rating baseline."""
    with FeatureStore(shop / "store.duckdb", read_only=True) as store:
        folds = [set(store.split("rating", fold=k)["split"].to_list()) for k in (0, 1)]
        test_rows = store.split("rating", fold=0).filter(pl.col("split") == "test").height
        total = store.stats()["events"]
    assert folds[0] == {"train", "valid", "test"} and abs(test_rows - total / 5) < total * 0.03
    config = PipelineConfig(name="rate", domain="video").with_overrides({
        **MF, "train.protocol": "rating", "train.objective": "mse", "train.epochs": 3, "train.lr": 0.01})
    out = train_pipeline(shop / "store.duckdb", config, tmp_path / "models", progress=False)
    assert set(out.metrics["test"]) == {"rmse", "mae"}
    assert out.metrics["test"]["rmse"] < out.metrics["mean_rating"]["rmse"] * 1.5
    assert out.metrics["test_rows"] == test_rows
