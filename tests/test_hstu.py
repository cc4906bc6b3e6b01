"""The ``hstu`` encoder: shapes, causality, HSTU's pointwise (SiLU, /n) attention, the relative
position bias, the relative time bias (it reads gaps only, causally; event times reach only
encoders that ask, through batches, eval sets, training snapshots, bundles and serving),
training on a tiny store past popularity, the bundle round trip and ``recengine plugins check``."""

from __future__ import annotations

import re
from dataclasses import replace
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
from recengine.config import PipelineConfig, validate_components
from recengine.dataset import prepare
from recengine.errors import ConfigError, RequestError
from recengine.event_times import HISTORY_TS, QUERY_TS, TIMES_MISSING
from recengine.feature_store import FeatureStore
from recengine.pipeline import evaluate_bundle, train_pipeline
from recengine.plugin_manager import PluginManager
from recengine.plugins.encoders.hstu import (
    HSTUConfig,
    HSTUEncoder,
    pointwise_attention,
    time_gap_buckets,
)
from recengine.recommender import NO_EVENT_TIMES, TIME_NOT_USED, Recommender, Request
from recengine.testing import check_encoder
from recengine.train import PairBatches, SequenceBatches, train
from recengine.training_data import export_training_data, load_training_data

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


def test_time_gap_buckets_are_log2_seconds() -> None:
    times = torch.tensor([[0, 1, 60, 3_600, 86_400, 10**12]])
    buckets = time_gap_buckets(times, times, 32)
    assert buckets[0, :, 0].tolist() == [0, 1, 5, 11, 16, 31]  # the last gap is clipped to the last bucket
    assert torch.equal(buckets, buckets.transpose(1, 2))


def stamps(history: torch.Tensor, seed: int = 2, spread: int = 200_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Increasing event times (epoch seconds) for ``history``, 0 on padding, and a query time a
    minute after the newest."""
    generator = torch.Generator().manual_seed(seed)
    times = 1_700_000_000 + torch.randint(1, spread, history.shape, generator=generator).cumsum(dim=1)
    return torch.where(history > 0, times, torch.zeros_like(times)), times[:, -1] + 60


def encode_timed(encoder: HSTUEncoder, history: torch.Tensor, history_ts: torch.Tensor,
                 query_ts: torch.Tensor):  # type: ignore[no-untyped-def]
    return encoder({"ids": torch.ones(history.shape[0], dtype=torch.long), "history": history,
                    HISTORY_TS: history_ts, QUERY_TS: query_ts})


def timed_encoder(**params: object) -> HSTUEncoder:
    """An hstu with a time bias whose bucket biases are random (a fresh one's are zero)."""
    encoder = build(time_bias=True, time_buckets=24, **params).eval()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for layer in encoder.layers:
            layer.time_bias.bias.weight.copy_(torch.randn(layer.time_bias.bias.weight.shape, generator=generator))
    return encoder


def test_time_bias_reads_the_gaps_only() -> None:
    """Same items, different gaps: different encodings; every time shifted alike: the same."""
    history = histories()
    history_ts, query_ts = stamps(history)
    fresh = build(time_bias=True).eval()  # zero-initialised: times change nothing yet
    assert torch.allclose(encode_timed(fresh, history, history_ts, query_ts).sequence,
                          encode_timed(fresh, history, *stamps(history, seed=9)).sequence, atol=1e-6)
    encoder = timed_encoder()
    base = encode_timed(encoder, history, history_ts, query_ts)
    shifted = encode_timed(encoder, history, torch.where(history > 0, history_ts + 86_400 * 365, 0),
                           query_ts + 86_400 * 365)
    assert torch.allclose(base.sequence, shifted.sequence, atol=1e-6)
    other = encode_timed(encoder, history, *stamps(history, seed=9, spread=2_000))  # minutes apart, not days
    assert torch.equal(base.mask, other.mask)
    for row in range(1, 4):  # every row with a history reads its gaps (row 0 has none)
        assert not torch.allclose(base.vector[row], other.vector[row], atol=1e-4), row
    # the query time alone (when the prediction is made) moves the newest position, nothing else
    later = encode_timed(encoder, history, history_ts, query_ts + 10**6)
    assert torch.allclose(base.sequence[:, :-1], later.sequence[:, :-1], atol=1e-6)
    assert not torch.allclose(base.vector[1:], later.vector[1:], atol=1e-4)


def test_time_bias_is_causal() -> None:
    """Position t's query time is event t+1's: changing the times from position p on leaves every
    output before p - 1 as it was, and moves p - 1's."""
    encoder = timed_encoder(layers=3)
    history = histories(3)
    history[:, 2:] = torch.randint(1, ITEMS + 1, (3, LENGTH - 2))
    history_ts, query_ts = stamps(history)
    before = encode_timed(encoder, history, history_ts, query_ts).sequence
    for position in range(3, LENGTH):
        later_ts = history_ts.clone()
        later_ts[:, position:] += 10**7 * (position + 1)  # the events from ``position`` on happen much later
        after = encode_timed(encoder, history, later_ts, query_ts + 10**7 * (position + 1)).sequence
        assert torch.allclose(before[:, :position - 1], after[:, :position - 1], atol=1e-6), position
        assert not torch.allclose(before[:, position - 1], after[:, position - 1], atol=1e-4), position


def test_time_bias_without_timestamps_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape(TIMES_MISSING)):
        encode(build(time_bias=True), histories())


def test_only_a_time_bias_asks_for_event_times() -> None:
    assert HSTUEncoder.reads_event_times({"time_bias": True})
    assert not HSTUEncoder.reads_event_times({}) and not HSTUEncoder.reads_event_times({"time_bias": False})
    manager = PluginManager()
    manager.load_builtins()
    for name in ("transformer", "dense", "ease"):
        assert not manager.get("encoders", name).reads_event_times({}), name
    check_encoder(HSTUEncoder, name="hstu", params={"time_bias": True, "time_buckets": 8})
    config = PipelineConfig().with_overrides({"model.user_encoder": {"name": "hstu", "params": {"time_bias": True}}})
    validate_components(config, manager)  # accepted now that times are wired


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


# ---------------------------------------------------------------------------------------
# the time bias end to end: store times → batches, evaluation, bundle, serving
# ---------------------------------------------------------------------------------------

TIMED = {"model.user_encoder": {"name": "hstu", "params": {"layers": 2, "heads": 2, "dropout": 0.1,
                                                            "time_bias": True, "time_buckets": 16}}}


def chain_config(**overrides: object) -> PipelineConfig:
    return PipelineConfig(name="chain-hstu-time").with_overrides({
        "model.item_encoder": {"name": "dense", "params": {"use_features": False}},
        "model.dim": 16, "model.max_history": 10, "train.protocol": "seq", "train.epochs": 8,
        "train.lr": 1e-2, "train.batch_size": 64, "train.patience": 8, "train.threads": 1, **overrides,
    })


def prepared(store_path: Path, config: PipelineConfig):  # type: ignore[no-untyped-def]
    with FeatureStore(store_path, read_only=True) as store:
        return prepare(store, config)


def test_times_are_gathered_only_for_an_encoder_that_reads_them(chain_store: Path) -> None:
    plain = prepared(chain_store, chain_config(**{"model.user_encoder": {"name": "hstu"}}))
    inter = plain.interactions
    assert inter.times is None and inter.valid.history_times is None and inter.test.query_times is None
    assert len(next(SequenceBatches(plain, 10).batches(8, np.random.default_rng(0)))) == 4
    assert len(next(PairBatches(plain, 10).batches(8, np.random.default_rng(0)))) == 5

    data = prepared(chain_store, chain_config(**TIMED))
    inter = data.interactions
    assert inter.times is not None and inter.times.dtype == np.int64
    assert np.array_equal(inter.users, plain.interactions.users)
    assert np.array_equal(inter.items, plain.interactions.items)
    at = {(u, i): t for u, i, t in zip(inter.users.tolist(), inter.items.tolist(), inter.times.tolist())}
    assert len(at) == inter.users.size  # every user meets an item once in the chain: (user, item) names an event
    owners, inputs, targets, _, input_ts, query_ts = next(
        SequenceBatches(data, 10, times=inter.times).batches(64, np.random.default_rng(0)))
    for row in range(owners.size):
        real = inputs[row] > 0
        assert input_ts[row][real].tolist() == [at[owners[row], i] for i in inputs[row][real].tolist()]
        assert (input_ts[row][~real] == 0).all()
        assert query_ts[row] == at[owners[row], targets[row, -1]]  # the newest position predicts the last target
    users, history, items, _, _, history_ts, event_ts = next(
        PairBatches(data, 10, inter.times).batches(64, np.random.default_rng(0)))
    for row in range(users.size):
        real = history[row] > 0
        assert history_ts[row][real].tolist() == [at[users[row], i] for i in history[row][real].tolist()]
        assert event_ts[row] == at[users[row], items[row]]
    for eval_set in (inter.valid, inter.test):  # the chain's events are a minute apart: so is the query
        assert eval_set.history_times is not None and eval_set.query_times is not None
        assert [len(t) for t in eval_set.history_times] == [len(h) for h in eval_set.histories]
        assert all(q - t[-1] == 60 for q, t in zip(eval_set.query_times.tolist(), eval_set.history_times))


@pytest.fixture(scope="module")
def trained_timed(chain_store: Path):  # type: ignore[no-untyped-def]
    return train_pipeline(chain_store, chain_config(**TIMED), chain_store.parent / "models", progress=False)


def test_a_time_bias_trains_evaluates_and_keeps_its_times_in_the_bundle(
        trained_timed, trained, chain_store: Path) -> None:  # type: ignore[no-untyped-def]
    metrics = trained_timed.metrics
    assert trained_timed.result.mode == "sequence"
    test, popularity = metrics["test"]["ndcg@10"], metrics["popularity"]["ndcg@10"]
    assert test > 0.8 and test > 3 * popularity, (test, popularity)
    learned = trained_timed.result.model.user_encoder.layers[0].time_bias.bias.weight
    assert learned.abs().sum() > 0  # the bucket biases trained (they start at zero)
    bundle = load_bundle(trained_timed.bundle_path)
    assert bundle.model.reads_event_times and bundle.history_times is not None
    assert bundle.history_times.shape == bundle.histories.shape
    assert np.array_equal(bundle.history_times > 0, bundle.histories > 0)
    again = evaluate_bundle(bundle, chain_store)
    assert again["test"]["ndcg@10"] == pytest.approx(test, abs=1e-6)
    plain = load_bundle(trained.bundle_path)  # other encoders' bundles carry no times
    assert plain.history_times is None and not plain.model.reads_event_times


def test_a_time_bias_bundle_serves_with_the_snapshots_times(trained_timed, chain_store: Path,
                                                            tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FeatureStore(chain_store) as store:
        store.publish(tmp_path / "snapshots")
        last = store.sql("SELECT user_id, arg_max(item_id, ts) AS item, max(ts) AS ts FROM events GROUP BY user_id")
    newest = {u: (int(i[1:]), ts) for u, i, ts in last.iter_rows()}
    served = Recommender.load(trained_timed.bundle_path, snapshot=tmp_path / "snapshots")
    assert served.user_vectors is None  # a vector read against the request's time is never cached
    users = [f"u{u}" for u in range(0, CHAIN_USERS, 12)]
    right = 0
    for user in users:
        history = served.user_history(user)
        assert len(history.times) == history.items.size == CHAIN_EVENTS  # the snapshot's times, item by item
        now = newest[user][1] + timedelta(minutes=1)
        answer = served.recommend(user, 5, now=now)
        assert len(answer) == 5 and not answer.fallback and TIME_NOT_USED not in answer.notes
        right += answer[0].item_id == f"i{(newest[user][0] + 1) % CHAIN_ITEMS}"  # the chain's next item
    assert right >= 0.8 * len(users), right
    # the request's time is read: a year later the same history scores differently
    user = users[0]
    soon = served.recommend(user, 5, now=newest[user][1] + timedelta(minutes=1))
    late = served.recommend(user, 5, now=newest[user][1] + timedelta(days=365))
    assert [r.score for r in soon] != [r.score for r in late]
    # without a snapshot the bundle's own times serve; a history sent with the request has none
    offline = Recommender(load_bundle(trained_timed.bundle_path))
    assert len(offline.recommend(users[1], 5)) == 5
    carried = offline.answer_many([Request(users[1], 5, history=["i1", "i2"])])[0]
    assert isinstance(carried, RequestError) and str(carried) == NO_EVENT_TIMES


def test_event_times_survive_a_training_snapshot_and_train_in_pairs_mode(chain_store: Path, tmp_path: Path) -> None:
    config = chain_config(**TIMED, **{"train.mode": "pairs", "train.epochs": 1})
    data = prepared(chain_store, config)
    loaded = load_training_data(export_training_data(data, tmp_path / "snapshot"))
    inter, back = data.interactions, loaded.interactions
    assert back.times is not None and inter.times is not None and np.array_equal(back.times, inter.times)
    for ours, theirs in ((inter.valid, back.valid), (inter.test, back.test)):
        assert ours.query_times is not None and theirs.query_times is not None
        assert np.array_equal(ours.query_times, theirs.query_times)
        assert [t.tolist() for t in theirs.history_times or []] == [t.tolist() for t in ours.history_times or []]
    result = train(config, loaded, progress=False)
    assert result.mode == "pairs" and np.isfinite(result.history[0]["loss"])
    untimed = replace(loaded, interactions=replace(back, times=None))
    with pytest.raises(ConfigError, match="has no event times"):
        train(config, untimed, progress=False)
