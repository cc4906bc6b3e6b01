"""What breaks at a million users, items and ten million events, each at a size that shows the fix:
the streamed generator (memory flat in the events), the seeded validation and test samples
(training ranks N users, not every user against every item), row-sparse updates of million-row
tables, and evaluation sets and sequence windows built without a Python loop over users."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

from recengine import synthetic as syn
from recengine.config import PipelineConfig
from recengine.errors import ConfigError
from recengine.eval_sample import EVALUATE_SEED, sample_rows, sample_user_ids, sampled_for_validation
from recengine.eval_sets import PHASES, build_eval_set
from recengine.pipeline import final_metrics
from recengine.plugins.domains import ecommerce
from recengine.sparse_rows import SPARSE_MIN_ROWS, SplitAdam, make_optimizer
from recengine.train import load_checkpoint, save_checkpoint, train
from recengine.training_data import EvalSet, FeatureTable, IdMap, Interactions, PreparedData
from recengine.windows import sequence_windows


# -- the streamed generator -----------------------------------------------------------------
def _numpy_peak(events: int, chunk_events: int, out: Path) -> int:
    """Peak bytes numpy holds (tracemalloc sees numpy's buffers) while writing generated data."""
    tracemalloc.start()
    try:
        ecommerce.generate(20_000, 5_000, events, 1, chunk_events=chunk_events).write(out)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_generator_memory_stays_flat_as_events_grow(tmp_path: Path) -> None:
    """Four times the events in blocks of 100k views: numpy's peak barely moves (unchunked, it grows
    with every event array: ~4x)."""
    small = _numpy_peak(300_000, 100_000, tmp_path / "small")
    large = _numpy_peak(1_200_000, 100_000, tmp_path / "large")
    assert large < 1.5 * small, (small, large)
    assert pq.ParquetFile(tmp_path / "large" / "events.parquet").metadata.num_rows == 1_200_000


def test_streamed_events_equal_the_frames_and_keep_the_funnel(tmp_path: Path) -> None:
    data = ecommerce.generate(2_000, 1_000, 60_000, 3, chunk_events=5_000)
    paths = data.write(tmp_path)
    sizes = data.sizes()
    assert {k: sizes[k] for k in ("users", "items", "events")} == {"users": 2_000, "items": 1_000, "events": 60_000}
    assert data.searches is not None and sizes["searches"] == data.searches.height > 0  # shoppers search too
    assert pl.read_parquet(paths["searches"]).equals(data.searches)
    written = pl.read_parquet(paths["events"])
    assert pq.ParquetFile(paths["events"]).num_row_groups > 5  # one (or more) per block
    assert not (tmp_path / "events.parquet.partial").exists()
    assert written.equals(data.events)  # read after the write: the seeded generator runs again, alike
    for kind in ("users", "items"):
        assert pl.read_parquet(paths[kind]).equals(getattr(data, kind))
    shares = written["event_type"].value_counts(normalize=True).sort("event_type")["proportion"].to_list()
    assert shares == pytest.approx([0.21, 0.08, 0.71], abs=0.01)  # each block carries its share of the funnel
    joined = written.join(data.items.select("item_id", "created_at"), on="item_id")
    assert (joined["ts"] >= joined["created_at"]).all()  # items created before their first event, over blocks
    # within a block of users, time order; blocks follow one another by user
    first_user = written["user_id"].str.slice(1).cast(pl.Int64)
    assert written.with_columns(u=first_user).group_by("u").agg(pl.col("ts").is_sorted())["ts"].all()


def test_one_block_is_the_unchunked_generator() -> None:
    """Up to ``chunk_events`` views the data equal the whole-table draw (same seed, same frames)."""
    whole = ecommerce.generate(300, 200, 8_000, 5)
    blocked = ecommerce.generate(300, 200, 8_000, 5, chunk_events=7_000)
    for kind in ("users", "items", "events"):
        assert getattr(whole, kind).equals(getattr(blocked, kind))
    assert whole.events["ts"].is_sorted()


def test_a_failed_stream_leaves_no_events_file(tmp_path: Path) -> None:
    def build(sink: syn.EventSink) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
        sink(pl.DataFrame({"user_id": ["u1"], "item_id": ["i1"]}))
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        syn.SyntheticData.streamed(build).write(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_chunks_and_shares_are_exact() -> None:
    counts = np.array([3, 0, 5, 20, 1, 1])
    assert syn.user_chunks(counts, 6) == [(0, 2), (2, 3), (3, 4), (4, 6)]
    parts = syn.apportion(10, [1, 1, 1])
    assert parts.sum() == 10 and sorted(parts.tolist()) == [3, 3, 4]
    assert syn.apportion(0, [1, 2]).tolist() == [0, 0]


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="chunk_events must be a positive integer"):
        ecommerce.generate(10, 10, 10, 0, chunk_events=0)


# -- validation and test samples ------------------------------------------------------------
def _sets(users: np.ndarray, items: int, rng: np.random.Generator) -> EvalSet:
    n = users.size  # rows of one matrix as the per-user arrays: no Python loop over users here either
    return EvalSet(users, list(rng.integers(1, items + 1, (n, 3))), list(rng.integers(1, items + 1, (n, 1))),
                   list(np.zeros((n, 0), dtype=np.int64)))


def _prepared(num_users: int, num_items: int) -> PreparedData:
    """``num_users`` users with two training events each and one validation and test item."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, num_users + 1), 2)
    items = rng.integers(1, num_items + 1, users.size)
    every = np.arange(1, num_users + 1)
    interactions = Interactions(users=users, items=items, weights=np.ones(users.size, np.float32),
                                values=np.ones(users.size, np.float32), valid=_sets(every, num_items, rng),
                                test=_sets(every, num_items, rng), test_unmasked=True)
    return PreparedData(users=IdMap([f"u{i:07d}" for i in every]), items=IdMap([f"i{i:07d}" for i in range(num_items)]),
                        user_features=FeatureTable.empty(), item_features=FeatureTable.empty(),
                        interactions=interactions,
                        popularity=np.bincount(items, minlength=num_items + 1).astype(np.float32))


def _config(**train: object) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "model": {"dim": 8, "user_encoder": {"name": "dense"}, "item_encoder": {"name": "dense"}},
        "train": {"protocol": "seq", "mode": "pairs", "epochs": 1, "batch_size": 8192, "negatives": 16,
                  "sampling": "shared", "device": "cpu", **train}})


def test_row_sample_is_the_id_sample_of_evaluate() -> None:
    """Training's test sample ranks the users `recengine evaluate --sample-users` ranks."""
    ids = IdMap(sorted(f"u{i:05d}" for i in range(5_000)))
    users = np.sort(np.random.default_rng(1).choice(np.arange(1, 5_001), 3_000, replace=False))
    rows = sample_rows(users, 400, EVALUATE_SEED)
    assert set(ids.decode(users[rows])) == sample_user_ids(ids.decode(users), 400)
    assert np.all(np.diff(rows) > 0)
    assert sample_rows(users, 10_000, 0).tolist() == list(range(3_000))


def test_validation_and_test_rank_only_their_samples_at_200k_users(monkeypatch: pytest.MonkeyPatch) -> None:
    """200k users x 20k items: every user ranked would be 4e9 scores per ranking (a minute or more,
    five rankings a run); with samples, validation ranks 2,000 users and the test 1,500."""
    import recengine.evaluate as evaluate

    ranked: list[int] = []
    rank = evaluate.rank_eval_set

    def counting(score_fn: evaluate.ScoreFn, eval_set: EvalSet, *args: object, **kwargs: object) -> evaluate.Ranking:
        ranked.append(len(eval_set))
        return rank(score_fn, eval_set, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluate, "rank_eval_set", counting)
    data = _prepared(200_000, 20_000)
    config = _config(valid_users=2_000, test_users=1_500)
    valid = sampled_for_validation(data.interactions, config.train)
    again = sampled_for_validation(data.interactions, config.train)
    assert len(valid.valid) == 2_000 and np.array_equal(valid.valid.users, again.valid.users)
    assert valid.test is data.interactions.test and valid.users is data.interactions.users
    other = sampled_for_validation(data.interactions, _config(valid_users=2_000, split_seed=7).train)
    assert not np.array_equal(other.valid.users, valid.valid.users)  # drawn with split_seed
    result = train(config, data, progress=False)
    metrics = final_metrics(config, data, result, 1.0)
    assert ranked == [2_000] + [1_500] * 4  # validation; test and popularity, masked and unmasked (P-seq)
    assert metrics["test_users"] == 1_500 and metrics["all_test_users"] == 200_000
    assert "ndcg@10" in result.best_valid


def test_no_sample_keeps_every_user() -> None:
    data = _prepared(300, 50)
    assert sampled_for_validation(data.interactions, _config().train) is data.interactions
    metrics = final_metrics(_config(), data, train(_config(), data, progress=False), 1.0)
    assert metrics["test_users"] == 300 and "all_test_users" not in metrics


@pytest.mark.parametrize("field", ["valid_users", "test_users"])
def test_sample_sizes_must_be_positive(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        PipelineConfig().with_overrides({f"train.{field}": 0})


# -- row-sparse updates of the large tables ---------------------------------------------------
class _Tower(torch.nn.Module):
    device = torch.device("cpu")  # what the checkpoint loader reads off a model

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(rows, 8, padding_idx=0)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.table(ids)).square().mean()


def test_a_million_row_table_updates_only_its_batch_rows(tmp_path: Path) -> None:
    """Adam over a dense gradient rewrites all 1M rows every step (3 s a step at 1M users and items
    at dim 64); the split optimiser moves the batch's rows alone and checkpoints like Adam."""
    model = _Tower(1_000_000)
    optimizer = make_optimizer(model, [{"params": list(model.parameters())}], 0.01, 0.0, allow_sparse=True)
    assert isinstance(optimizer, SplitAdam) and model.table.sparse
    before = model.table.weight.detach().clone()
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.tensor([3, 7, 7, 11])).backward()
        assert model.table.weight.grad is not None and model.table.weight.grad.is_sparse
        optimizer.step()
    moved = (model.table.weight.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert moved == [3, 7, 11]
    save_checkpoint(tmp_path, model, optimizer, {"epoch": 1})  # type: ignore[arg-type]
    again = _Tower(1_000_000)
    restored = make_optimizer(again, [{"params": list(again.parameters())}], 0.01, 0.0, allow_sparse=True)
    assert load_checkpoint(tmp_path, again, restored) == {"epoch": 1}  # type: ignore[arg-type]
    for key, value in optimizer.state_dict()["state"].items():
        for name, saved in value.items():
            loaded = restored.state_dict()["state"][key][name]
            assert torch.equal(loaded, saved) if torch.is_tensor(saved) else loaded == saved, (key, name)
    again(torch.tensor([5])).backward()
    restored.step()  # and it trains on from there


def test_small_tables_weight_decay_and_data_parallel_keep_adam() -> None:
    small = _Tower(1_000)
    assert type(make_optimizer(small, [{"params": list(small.parameters())}], 0.01, 0.0, True)) is torch.optim.Adam
    large = _Tower(SPARSE_MIN_ROWS)
    for decay, allowed in ((0.1, True), (0.0, False)):
        optimizer = make_optimizer(large, [{"params": list(large.parameters())}], 0.01, decay, allowed)
        assert type(optimizer) is torch.optim.Adam and not large.table.sparse


# -- evaluation sets and sequence windows without a loop over users -------------------------------
def _reference_eval_set(users: np.ndarray, items: np.ndarray, phases: np.ndarray, which: str, protocol: str,
                        length: int) -> tuple[list[int], list[list[int]], list[list[int]], list[list[int]]]:
    """The rules per user, spelled out: what the vectorised build must give."""
    code = PHASES.index(which)
    out: tuple[list[int], list[list[int]], list[list[int]], list[list[int]]] = ([], [], [], [])
    for user in np.unique(users).tolist():
        mine, kinds = items[users == user], phases[users == user]
        targets = mine[kinds == code]
        if targets.size == 0:
            continue
        if protocol == "seq":
            history = mine[:int(np.flatnonzero(kinds == code)[0])]
            seen = sorted(set(history.tolist()) - set(targets.tolist()))
        else:
            history = np.concatenate([mine[kinds == 0], mine[kinds == 1] if code == 2 else mine[:0]])
            seen = sorted(set(history.tolist()))
        out[0].append(user)
        out[1].append(history[-length:].tolist())
        out[2].append(sorted(set(targets.tolist())))
        out[3].append(seen)
    return out


@pytest.mark.parametrize("protocol", ["seq", "gen"])
def test_eval_sets_follow_the_rules(protocol: str) -> None:
    rng = np.random.default_rng(4)
    users = np.sort(rng.integers(1, 120, 2_500))
    items, phases = rng.integers(1, 40, users.size), rng.choice(4, users.size, p=[0.6, 0.15, 0.2, 0.05])
    for which in ("valid", "test"):
        built = build_eval_set(users, items, phases.astype(np.int8), which, protocol, 5)
        expected = _reference_eval_set(users, items, phases, which, protocol, 5)
        assert built.users.tolist() == expected[0]
        for name, rows in zip(("histories", "positives", "exclude"), expected[1:]):
            assert [a.tolist() for a in getattr(built, name)] == rows, name


def test_eval_sets_of_300k_users() -> None:
    """At a size where a loop over users (a setdiff1d each: six minutes at 1M users) would dominate the
    suite; the speed itself is benchmarks/scale.py's to show."""
    rng = np.random.default_rng(0)
    counts = rng.integers(2, 8, 300_000)
    users = np.repeat(np.arange(1, counts.size + 1), counts)
    position = np.arange(users.size) - np.repeat(np.cumsum(counts) - counts, counts)
    phases = np.where(position == np.repeat(counts - 1, counts), 2, np.where(position == np.repeat(counts - 2, counts),
                                                                              1, 0)).astype(np.int8)
    items = rng.integers(1, 1_000_000, users.size)
    valid = build_eval_set(users, items, phases, "valid", "seq", 50)
    test = build_eval_set(users, items, phases, "test", "seq", 50)
    assert len(valid) == len(test) == 300_000
    assert test.histories[0].tolist() == items[:counts[0] - 1].tolist()  # the validation target joins it


def _reference_windows(users: np.ndarray, items: np.ndarray, length: int) -> list[tuple[int, list[int], list[int]]]:
    """Non-overlapping windows from each user's end, spelled out."""
    out = []
    for user in np.unique(users).tolist():
        sequence = items[users == user].tolist()
        for end in range(len(sequence), 1, -length):
            window = sequence[max(0, end - length - 1):end]
            pad = [0] * (length + 1 - len(window))
            out.append((user, pad + window[:-1], pad + window[1:]))
    return out


def test_windows_follow_the_rules_at_300k_users_too() -> None:
    rng = np.random.default_rng(2)
    users = np.sort(rng.integers(0, 40, 900))
    items = rng.integers(1, 30, users.size)
    inputs, targets, weights, owners = sequence_windows(users, items, np.ones(users.size, np.float32), 6)
    expected = _reference_windows(users, items, 6)
    assert [(o, i, t) for o, i, t in zip(owners.tolist(), inputs.tolist(), targets.tolist())] == expected
    assert np.array_equal(weights > 0, targets > 0)
    many = np.repeat(np.arange(1, 300_001), rng.integers(1, 30, 300_000))  # three minutes as a loop at 1M users
    inputs, targets, weights, owners = sequence_windows(many, rng.integers(1, 1_000_000, many.size),
                                                        np.ones(many.size, np.float32), 20)
    assert int((targets > 0).sum()) == many.size - np.unique(many).size  # every item but each user's first
