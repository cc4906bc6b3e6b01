"""The ``hstu`` encoder: shapes, causality, HSTU's pointwise (SiLU, /n) attention, the relative
position bias, the refused time bias, training on a tiny store past popularity, the bundle
round trip and ``recengine plugins check``."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from recengine.bundle import load_bundle
from recengine.cli import cli
from recengine.components import EncoderContext, FeatureSpec
from recengine.config import ComponentRef, PipelineConfig, validate_components
from recengine.errors import ConfigError
from recengine.feature_store import FeatureStore
from recengine.pipeline import evaluate_bundle, train_pipeline
from recengine.plugin_manager import PluginManager
from recengine.plugins.encoders.hstu import (
    TIME_BIAS_NOT_WIRED,
    HSTUConfig,
    HSTUEncoder,
    pointwise_attention,
    time_gap_buckets,
)
from recengine.testing import check_encoder

DIM, ITEMS, USERS, LENGTH = 16, 30, 12, 8


def build(seed: int = 0, length: int = LENGTH, **params: object) -> HSTUEncoder:
    torch.manual_seed(seed)
    table = torch.nn.Embedding(ITEMS + 1, DIM, padding_idx=0)
    context = EncoderContext("user", DIM, FeatureSpec(num_ids=USERS), ITEMS, length, embed_items=table)
    return HSTUEncoder(context, HSTUConfig(**params))  # type: ignore[arg-type]


def histories(size: int = 4, length: int = LENGTH, seed: int = 1) -> torch.Tensor:
    """Right-aligned histories of varied lengths (row 0 empty, then 2, 4, 6 items)."""
    generator = torch.Generator().manual_seed(seed)
    history = torch.randint(1, ITEMS + 1, (size, length), generator=generator)
    for row in range(size):
        history[row, : length - row * length // max(size - 1, 1)] = 0
    return history


def encode(encoder: HSTUEncoder, history: torch.Tensor):  # type: ignore[no-untyped-def]
    return encoder({"ids": torch.ones(history.shape[0], dtype=torch.long), "history": history})


def test_shapes_mask_and_vector_is_the_newest_position() -> None:
    encoder = build().eval()
    history = histories()
    out = encode(encoder, history)
    assert out.vector.shape == (4, DIM) and out.sequence.shape == (4, LENGTH, DIM)
    assert torch.equal(out.mask, history > 0)
    assert torch.equal(out.vector, out.sequence[:, -1])
    assert torch.all(out.sequence[~out.mask] == 0) and torch.isfinite(out.sequence).all()


def test_keeps_the_encoder_contract() -> None:
    check_encoder(HSTUEncoder, name="hstu")
    check_encoder(HSTUEncoder, name="hstu", params={"layers": 1, "heads": 4, "relative_distance": 3})


def test_output_at_a_position_does_not_depend_on_later_items() -> None:
    encoder = build(layers=3).eval()
    history = histories(3)
    history[:, 2:] = torch.randint(1, ITEMS + 1, (3, LENGTH - 2))  # every row long enough to change its tail
    before = encode(encoder, history).sequence
    for position in range(2, LENGTH):
        changed = history.clone()
        changed[:, position:] = (changed[:, position:] % ITEMS) + 1  # every item from ``position`` on
        after = encode(encoder, changed).sequence
        assert torch.allclose(before[:, :position], after[:, :position], atol=1e-6), position
        assert not torch.allclose(before[:, position], after[:, position]), position


def test_left_padding_does_not_change_the_encoding() -> None:
    """Relative positions and a fixed n: a history reads the same in a narrower tensor."""
    encoder = build().eval()
    history = histories()
    narrow = history[:, -5:]
    assert torch.all(history[:3, :-5] == 0) and history[3, :-5].any()  # rows 0-2 lose only padding
    wide_out, narrow_out = encode(encoder, history), encode(encoder, narrow)
    assert torch.allclose(wide_out.sequence[:3, -5:], narrow_out.sequence[:3], atol=1e-6)
    assert not torch.allclose(wide_out.vector[3], narrow_out.vector[3], atol=1e-6)  # row 3 lost an item


def test_pointwise_attention_is_silu_over_n_not_a_softmax() -> None:
    torch.manual_seed(0)
    batch, heads, length, width, n = 2, 3, 5, 4, 7
    q, k, v = (torch.randn(batch, heads, length, width) for _ in range(3))
    bias = torch.randn(heads, length, length)
    allowed = torch.ones(length, length, dtype=torch.bool).tril().expand(batch, 1, length, length)
    out = pointwise_attention(q, k, v, bias, allowed, n)
    expected = torch.zeros_like(out)
    for b in range(batch):
        for h in range(heads):
            for t in range(length):
                for s in range(t + 1):  # causal: keys at or before the query
                    weight = F.silu(q[b, h, t] @ k[b, h, s] + bias[h, t, s]) / n
                    expected[b, h, t] += weight * v[b, h, s]
    assert torch.allclose(out, expected, atol=1e-5)
    # intensity survives: attending to two copies of one item gives twice one copy (a softmax gives the same)
    one = torch.tensor([[[[False, True]]]])
    two = torch.tensor([[[[True, True]]]])
    same_q, same_k, same_v = torch.ones(1, 1, 1, 2), torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0)
    zero = torch.zeros(1, 1, 2)
    single = pointwise_attention(same_q, same_k, same_v, zero, one, n)
    double = pointwise_attention(same_q, same_k, same_v, zero, two, n)
    assert torch.allclose(double, 2 * single) and not torch.allclose(single, torch.zeros_like(single))


def test_attention_is_divided_by_max_history() -> None:
    """The layer's n is the context's ``max_history``: doubling it halves every attention output."""
    encoder = build().eval()
    layer = encoder.layers[0]
    assert layer.n == LENGTH
    captured: list[torch.Tensor] = []
    hook = layer.attended_norm.register_forward_hook(lambda module, args, output: captured.append(args[0]))
    history = histories()
    encode(encoder, history)
    layer.n = 2 * LENGTH
    encode(encoder, history)
    hook.remove()
    assert torch.allclose(captured[1], captured[0] / 2, atol=1e-6)


def test_relative_position_bias_is_learned_per_distance_and_shared_past_the_limit() -> None:
    encoder = build(relative_distance=3)
    bias = encoder.layers[0].position_bias
    with torch.no_grad():
        bias.bias.weight.copy_(torch.arange(6, dtype=torch.float32).view(3, 2))  # distance d, head h → 2d + h
    distances = torch.tensor([[0, -1, -2, -3], [1, 0, -1, -2], [2, 1, 0, -1], [5, 2, 1, 0]])
    out = bias(distances)
    assert out.shape == (2, 4, 4)
    assert out[1, 1, 0] == 3 and out[0, 2, 0] == 4 and out[0, 3, 0] == 4  # distance 5 shares distance 2's bias
    # the bias reaches the encoding: a trained model's distance biases change its output
    history = histories()
    before = encode(encoder.eval(), history).vector
    with torch.no_grad():
        encoder.layers[0].position_bias.bias.weight.zero_()
    assert not torch.allclose(before[1:], encode(encoder, history).vector[1:])


def test_time_bias_is_refused_until_timestamps_are_wired() -> None:
    manager = PluginManager()
    manager.load_builtins()
    with pytest.raises(ConfigError, match=TIME_BIAS_NOT_WIRED):
        manager.component_config("encoders", ComponentRef(name="hstu", params={"time_bias": True}),
                                 "model.user_encoder")
    config = PipelineConfig().with_overrides({"model.user_encoder": {"name": "hstu", "params": {"time_bias": True}}})
    with pytest.raises(ConfigError, match="(?s)model.user_encoder \\('hstu'\\).*" + TIME_BIAS_NOT_WIRED):
        validate_components(config, manager)
    validate_components(config.with_overrides({"model.user_encoder.params": {"time_bias": False}}), manager)


def test_time_gap_buckets_are_log2_seconds() -> None:
    times = torch.tensor([[0, 1, 60, 3_600, 86_400, 10**12]])
    buckets = time_gap_buckets(times, times, 32)
    assert buckets[0, :, 0].tolist() == [0, 1, 5, 11, 16, 31]  # the last gap is clipped to the last bucket
    assert torch.equal(buckets, buckets.transpose(1, 2))


def test_uneven_heads_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dim 16 is not divisible by heads 3"):
        build(heads=3)


# ---------------------------------------------------------------------------------------
# training, bundle, CLI
# ---------------------------------------------------------------------------------------

CHAIN_ITEMS, CHAIN_USERS, CHAIN_EVENTS = 60, 240, 16


@pytest.fixture(scope="module")
def chain_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Users walk the items in order (i, i+1, ...), from random starts: popularity is flat,
    the next item follows from the last one."""
    path = tmp_path_factory.mktemp("hstu-chain") / "store.duckdb"
    rng = np.random.default_rng(0)
    t0 = datetime(2024, 1, 1)
    rows = []
    for user in range(CHAIN_USERS):
        start = int(rng.integers(CHAIN_ITEMS))
        for step in range(CHAIN_EVENTS):
            rows.append((f"u{user}", f"i{(start + step) % CHAIN_ITEMS}", t0 + timedelta(minutes=user * 100 + step)))
    events = pl.DataFrame(rows, schema=["user_id", "item_id", "ts"], orient="row").with_columns(
        pl.lit("view").alias("event_type"), pl.lit(1.0).alias("value"))
    with FeatureStore(path) as store:
        store.ingest(pl.DataFrame({"user_id": [f"u{u}" for u in range(CHAIN_USERS)]}), "users")
        store.ingest(pl.DataFrame({"item_id": [f"i{i}" for i in range(CHAIN_ITEMS)]}), "items")
        store.ingest(events, "events")
    return path


@pytest.fixture(scope="module")
def trained(chain_store: Path):  # type: ignore[no-untyped-def]
    config = PipelineConfig(name="chain-hstu").with_overrides({
        "model.user_encoder": {"name": "hstu", "params": {"layers": 2, "heads": 2, "dropout": 0.1}},
        "model.item_encoder": {"name": "dense", "params": {"use_features": False}},
        "model.dim": 16, "model.max_history": 10, "train.protocol": "seq", "train.epochs": 8,
        "train.lr": 1e-2, "train.batch_size": 64, "train.patience": 8, "train.threads": 1,
    })
    return train_pipeline(chain_store, config, chain_store.parent / "models", progress=False)


def test_trains_in_sequence_mode_and_beats_popularity(trained) -> None:  # type: ignore[no-untyped-def]
    metrics = trained.metrics
    assert trained.result.mode == "sequence"
    test, popularity = metrics["test"]["ndcg@10"], metrics["popularity"]["ndcg@10"]
    assert test > 0.8 and test > 3 * popularity, (test, popularity)


def test_bundle_round_trip_encodes_and_evaluates_alike(trained, chain_store: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = load_bundle(trained.bundle_path)
    assert bundle.config.model.user_encoder.name == "hstu"
    history = torch.as_tensor(bundle.histories[1:9])
    users = torch.arange(1, 9)
    with torch.no_grad():
        original = trained.result.model.cpu().eval().encode_users(users, history)
        loaded = bundle.model.encode_users(users, history)
    assert torch.equal(original.sequence, loaded.sequence)
    again = evaluate_bundle(bundle, chain_store)
    assert again["test"]["ndcg@10"] == pytest.approx(trained.metrics["test"]["ndcg@10"], abs=1e-6)


def test_plugins_check_passes_for_hstu() -> None:
    result = CliRunner().invoke(cli, ["plugins", "check", "recengine.plugins.encoders.hstu"])
    assert result.exit_code == 0, result.output
    assert "hstu" in result.output
