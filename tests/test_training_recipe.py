"""The softmax training recipe: shared and in-batch negatives, the logQ correction, cosine logits
with a temperature, the chunked full softmax, and memory-bounded evaluation."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recengine.bundle import load_bundle
from recengine.components import Encoded, InteractorContext
from recengine.config import PipelineConfig
from recengine.dataset import prepare
from recengine.errors import ConfigError
from recengine.evaluate import (
    block_users,
    evaluate_scorer,
    model_scorer,
    popularity_scorer,
    rank_eval_set,
)
from recengine.feature_store import FeatureStore
from recengine.pipeline import train_pipeline
from recengine.plugins.interactors.attention import AttentionConfig, AttentionInteractor
from recengine.plugins.interactors.dot import DotInteractor
from recengine.softmax import (
    CandidateCounts,
    NegativeSampler,
    SeenItems,
    chunked_full_softmax_loss,
    full_softmax_loss,
    sampled_softmax_loss,
)
from recengine.train import LossModule, SequenceBatches, build_model, train
from recengine.training_data import EvalSet, PreparedData
from tests.conftest import generated_shop

SEQUENCE = {"model.user_encoder": {"name": "transformer", "params": {"layers": 1, "heads": 1, "dropout": 0.1}},
            "model.dim": 32, "model.max_history": 20, "train.mode": "sequence", "train.protocol": "seq",
            "train.epochs": 3, "train.patience": 10, "train.batch_size": 64, "train.lr": 5e-3, "train.device": "cpu"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_shop(tmp_path_factory.mktemp("recipe"), 300, 200, 12_000, 5)


@pytest.fixture(scope="module")
def data(shop: Path) -> PreparedData:
    with FeatureStore(shop, read_only=True) as store:
        return prepare(store, PipelineConfig(name="recipe").with_overrides(SEQUENCE))


def _config(**train: Any) -> PipelineConfig:
    return PipelineConfig(name="recipe").with_overrides({**SEQUENCE, **{f"train.{k}": v for k, v in train.items()}})


RECIPES: dict[str, dict[str, Any]] = {
    "full softmax": {},
    "chunked full softmax": {"softmax_chunk": 37},
    "per-row negatives": {"negatives": 30, "sampling": "per_row"},
    "shared negatives": {"negatives": 30, "sampling": "shared"},
    "shared + in-batch + popularity + logQ": {"negatives": 30, "sampling": "shared", "in_batch_negatives": True,
                                              "sampler": "popularity"},
    "in-batch only": {"in_batch_negatives": True},
    "full softmax without seen items": {"exclude_seen": True},
    "shared + in-batch without seen items": {"negatives": 30, "sampling": "shared", "in_batch_negatives": True,
                                             "exclude_seen": True},
    "cosine, fixed temperature": {"negatives": 30, "sampling": "shared", "normalize": True, "temperature": 0.1},
    "cosine, learnt temperature": {"negatives": 30, "sampling": "shared", "normalize": True,
                                   "temperature": "learn"},
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_each_recipe_lowers_the_loss_and_beats_popularity(name: str, data: PreparedData) -> None:
    result = train(_config(**RECIPES[name]), data, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0], losses
    popular = evaluate_scorer(popularity_scorer(data.popularity), data.interactions.valid, (10,))
    assert result.best_valid["ndcg@10"] > popular["ndcg@10"], (result.best_valid, popular)
    if RECIPES[name].get("temperature") == "learn":
        temperatures = [h["temperature"] for h in result.history]
        assert temperatures[-1] != pytest.approx(0.1) and temperatures[-1] >= 0.01


def _random_user(positions: int, dim: int, length: int = 4, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    sequence = torch.randn(positions, length, dim, generator=g)
    mask = torch.ones(positions, length, dtype=torch.bool)
    mask[0, :2] = False
    vector = torch.randn(positions, dim, generator=g)
    return Encoded(vector=vector.requires_grad_(), sequence=sequence.requires_grad_(), mask=mask)


@pytest.mark.parametrize("interactor", ["dot", "attention"])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_full_softmax_equals_the_full_one_in_value_and_gradient(interactor: str, chunk: int) -> None:
    dim, items, positions = 8, 64, 5
    scorer = DotInteractor(InteractorContext(dim)) if interactor == "dot" else AttentionInteractor(
        InteractorContext(dim), AttentionConfig(chunk=16))
    targets = torch.tensor([1, 5, 63, 17, 5])
    losses, grads = [], []
    for chunked in (False, True):
        user = _random_user(positions, dim)
        matrix = torch.randn(items, dim, generator=torch.Generator().manual_seed(1)).requires_grad_()
        temperature = torch.tensor(0.5, requires_grad=True)
        loss = (chunked_full_softmax_loss(scorer, user, matrix, targets, chunk, temperature) if chunked
                else full_softmax_loss(scorer, user, matrix, targets, temperature))
        (loss * torch.arange(1.0, positions + 1)).sum().backward()
        losses.append(loss.detach())
        parameters = [p.grad for p in scorer.parameters()]
        grads.append([user.vector.grad, user.sequence.grad, matrix.grad, temperature.grad, *parameters])
        scorer.zero_grad()
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-5)
    for chunked_grad, full_grad in zip(grads[1], grads[0], strict=True):
        if full_grad is None:
            assert chunked_grad is None or not chunked_grad.abs().any()
            continue
        torch.testing.assert_close(chunked_grad, full_grad, atol=1e-5, rtol=1e-4)
    assert grads[0][2][0].abs().max() == 0  # the padding item is never a candidate


def test_logq_correction_matches_a_hand_computed_case() -> None:
    """One position, target 1, shared negatives [2, 3, 1] (the last an accidental hit), in-batch
    targets [1, 4] over 2 positions; popularity sampler over counts [0, 4, 1, 9, 2] ^ 0.5."""
    dot = DotInteractor(InteractorContext(2))
    vectors = {1: [1.0, 0.0], 2: [0.0, 1.0], 3: [0.5, 0.5], 4: [-1.0, 1.0]}
    user = Encoded(vector=torch.tensor([[2.0, 1.0], [0.0, 1.0]]))
    targets = torch.tensor([1, 4])
    counts = np.array([0, 4, 1, 9, 2], dtype=np.float64)
    sampler = NegativeSampler(4, counts, power=0.5)
    frequency = torch.as_tensor(counts / counts.sum(), dtype=torch.float32)
    negatives, in_batch = torch.tensor([2, 3, 1]), torch.tensor([1, 4])

    def vecs(ids: torch.Tensor) -> torch.Tensor:
        return torch.tensor([vectors[int(i)] for i in ids.reshape(-1)]).view(*ids.shape, 2)

    loss = sampled_softmax_loss(dot, user, targets, vecs(targets), negatives, vecs(negatives), in_batch=in_batch,
                                in_batch_vectors=vecs(in_batch), counts=CandidateCounts(sampler, 3, frequency, 2),
                                temperature=0.5)
    # by hand, for the first position (user [2, 1], target 1)
    q = {i: math.sqrt(counts[i]) / sum(math.sqrt(c) for c in counts[1:]) for i in range(1, 5)}
    p = {i: counts[i] / counts.sum() for i in range(1, 5)}

    def expected(i: int) -> float:
        return 3 * q[i] + (1 - (1 - p[i]) ** 2)

    def logit(i: int) -> float:
        u = (2.0, 1.0)
        return (u[0] * vectors[i][0] + u[1] * vectors[i][1]) / 0.5 - math.log(expected(i))

    # candidates: target 1 | negatives 2, 3, (1 masked) | in-batch (1 masked), 4
    kept = [logit(1), logit(2), logit(3), logit(4)]
    by_hand = -(kept[0] - math.log(sum(math.exp(z) for z in kept)))
    assert float(loss[0]) == pytest.approx(by_hand, rel=1e-5)
    uncorrected = sampled_softmax_loss(dot, user, targets, vecs(targets), negatives, vecs(negatives),
                                       in_batch=in_batch, in_batch_vectors=vecs(in_batch), temperature=0.5)
    assert float(uncorrected[0]) != pytest.approx(by_hand, rel=1e-3)  # the correction changed it


def test_uniform_logq_is_a_constant_and_changes_nothing() -> None:
    dot = DotInteractor(InteractorContext(4))
    user = _random_user(6, 4)
    targets = torch.tensor([1, 2, 3, 4, 5, 6])
    g = torch.Generator().manual_seed(3)
    table = torch.randn(11, 4, generator=g)
    negatives = torch.tensor([7, 8, 9, 10, 3])
    args = (dot, user, targets, table[targets], negatives, table[negatives])
    plain = sampled_softmax_loss(*args)
    corrected = sampled_softmax_loss(*args, counts=CandidateCounts(NegativeSampler(10), 5, None, 6))
    torch.testing.assert_close(corrected, plain)


@pytest.mark.parametrize("interactor", ["dot", "attention"])
def test_shared_negatives_give_the_per_row_loss_when_broadcast(interactor: str) -> None:
    dim, positions = 8, 6
    scorer = DotInteractor(InteractorContext(dim)) if interactor == "dot" else AttentionInteractor(
        InteractorContext(dim), AttentionConfig())
    user = _random_user(positions, dim)
    table = torch.randn(21, dim, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([1, 2, 3, 3, 9, 20])
    shared = torch.tensor([3, 5, 9, 11, 1, 17, 20])  # hits targets of several rows: masked per row
    per_row = shared.unsqueeze(0).expand(positions, -1)
    sampler = NegativeSampler(20, np.arange(21.0), 0.75)
    counts = CandidateCounts(sampler, shared.numel(), None, positions)
    a = sampled_softmax_loss(scorer, user, targets, table[targets], shared, table[shared], counts=counts)
    b = sampled_softmax_loss(scorer, user, targets, table[targets], per_row, table[per_row], counts=counts)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # masking: a row whose target is among the negatives scores as if that column were absent
    keep = shared != targets[2]
    c = sampled_softmax_loss(scorer, user, targets, table[targets], shared[keep], table[shared[keep]], counts=counts)
    torch.testing.assert_close(a[2], c[2], atol=1e-5, rtol=1e-5)


def test_popularity_sampler_draws_by_smoothed_popularity_and_never_padding_or_cold() -> None:
    counts = np.array([50.0, 0.0, 1.0, 16.0, 81.0])  # item 1 cold, index 0 padding
    sampler = NegativeSampler(4, counts, power=0.75)
    drawn = sampler.draw((200_000,), torch.Generator().manual_seed(0))
    frequency = np.bincount(drawn.numpy(), minlength=5) / drawn.numel()
    assert frequency[0] == 0 and frequency[1] == 0
    weights = counts[2:] ** 0.75
    np.testing.assert_allclose(frequency[2:], weights / weights.sum(), atol=0.005)
    uniform = NegativeSampler(4).draw((1000,), torch.Generator().manual_seed(0))
    assert int(uniform.min()) >= 1 and int(uniform.max()) <= 4


def test_zero_negatives_with_shared_sampling_is_the_full_softmax(data: PreparedData) -> None:
    losses = []
    for sampling in ("per_row", "shared"):
        config = _config(sampling=sampling)
        torch.manual_seed(0)
        model = build_model(config, data).eval()  # no dropout: both see the same forward
        objective = LossModule(model, config, "sequence", torch.Generator().manual_seed(0), data.popularity)
        batch = next(SequenceBatches(data, config.model.max_history).batches(32, np.random.default_rng(0)))
        losses.append(objective(batch).detach())
    torch.testing.assert_close(losses[0], losses[1])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"train.temperature": 0.1}, "set normalize = true"),
    ({"train.sampler": "popularity"}, "set negatives > 0"),
    ({"train.softmax_chunk": 512, "train.negatives": 10}, "softmax_chunk chunks the full softmax"),
    ({"train.softmax_chunk": 512, "train.in_batch_negatives": True}, "softmax_chunk chunks the full softmax"),
    ({"train.objective": "bpr", "train.in_batch_negatives": True}, "options of the softmax objective"),
    ({"train.normalize": True, "train.temperature": -1.0}, "temperature must be > 0"),
])
def test_meaningless_combinations_are_config_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineConfig(name="x").with_overrides(overrides)


def test_normalize_needs_the_dot_interactor(data: PreparedData) -> None:
    config = PipelineConfig(name="x").with_overrides({
        **SEQUENCE, "train.mode": "pairs", "train.normalize": True, "train.negatives": 10,
        "model.interactor": {"name": "attention", "params": {}}})
    with pytest.raises(ConfigError, match="needs the dot interactor, not 'attention'"):
        train(config, data, progress=False)


def test_normalized_vectors_reach_the_bundle_and_its_rankings(shop: Path, tmp_path: Path) -> None:
    config = _config(normalize=True, temperature="learn", negatives=30, sampling="shared", epochs=1)
    trained = train_pipeline(shop, config, tmp_path / "models", progress=False)
    bundle = load_bundle(trained.bundle_path)
    with torch.no_grad():
        norms = bundle.model.item_matrix()[1:].norm(dim=-1)
        user = bundle.model.encode_users(torch.tensor([0, 1]), torch.tensor([[0, 3, 4], [5, 6, 7]]))
    torch.testing.assert_close(norms, torch.ones_like(norms))
    torch.testing.assert_close(user.vector.norm(dim=-1), torch.ones(2))
    # the served model ranks the validation split exactly as the trained one
    valid = trained.data.interactions.valid
    ours = rank_eval_set(model_scorer(trained.result.model), valid, 10).top
    served = rank_eval_set(model_scorer(bundle.model), valid, 10).top
    np.testing.assert_array_equal(ours, served)


def test_chunked_evaluation_gives_the_same_lists_and_auc(data: PreparedData) -> None:
    config = _config()
    torch.manual_seed(0)
    scorer = model_scorer(build_model(config, data).eval())
    valid = data.interactions.valid
    whole = rank_eval_set(scorer, valid, 10, with_auc=True)
    width = len(data.items) + 1
    for users_per_block in (1, 3):
        blocks: list[int] = []
        chunked = rank_eval_set(scorer, valid, 10, with_auc=True, max_scores=users_per_block * width,
                                advance=blocks.append)
        np.testing.assert_array_equal(chunked.top, whole.top)
        np.testing.assert_array_equal(chunked.auc, whole.auc)
        np.testing.assert_array_equal(chunked.pos_len, whole.pos_len)
        assert max(blocks) == users_per_block and sum(blocks) == len(valid)


def test_a_million_item_catalogue_ranks_in_bounded_memory() -> None:
    """Scoring 64 users at once over 1M items would hold 256 MB per copy of the scores."""
    items, users = 1_000_000, 64
    assert block_users(items + 1, 512) == 8

    def score(user_ids: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        return np.random.default_rng(int(user_ids[0])).random((user_ids.size, items + 1), dtype=np.float32)

    eval_set = EvalSet(users=np.arange(users), histories=[np.zeros(0, dtype=np.int64)] * users,
                       positives=[np.array([u + 1]) for u in range(users)],
                       exclude=[np.zeros(0, dtype=np.int64)] * users)
    tracemalloc.start()
    try:
        ranking = rank_eval_set(score, eval_set, 10, batch_size=512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ranking.top.shape == (users, 10) and (ranking.top > 0).all()
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"


# -- batches cut to their longest window, and length buckets -----------------------------------
@pytest.mark.parametrize("encoder", ["transformer", "hstu"])
def test_padding_invariant_encoders_give_the_same_outputs_without_the_padding_columns(encoder: str,
                                                                                      data: PreparedData) -> None:
    """What lets sequence training cut a batch to its longest window: the real positions' outputs
    of a history at max_history and of the same history without its all-padding columns agree."""
    config = PipelineConfig(name="recipe").with_overrides(
        {**SEQUENCE, "model.user_encoder": {"name": encoder, "params": {"layers": 2, "heads": 2, "dropout": 0.1}}})
    model = build_model(config, data).eval()
    assert model.user_encoder.padding_invariant
    history = torch.zeros(3, 20, dtype=torch.long)
    history[0, -3:], history[1, -5:], history[2, -1:] = torch.tensor([4, 9, 2]), torch.arange(10, 15), 7
    owners = torch.tensor([1, 2, 3])
    with torch.no_grad():
        full = model.encode_users(owners, history)
        cut = model.encode_users(owners, history[:, -5:])
    assert full.sequence is not None and cut.sequence is not None
    torch.testing.assert_close(cut.sequence, full.sequence[:, -5:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cut.vector, full.vector, rtol=1e-5, atol=1e-6)
    assert not full.sequence[:, :-5].any()  # the columns cut away held nothing


def _batches(data: PreparedData, **options: Any) -> list[tuple[np.ndarray, ...]]:
    batches = SequenceBatches(data, 20, **options)
    return list(batches.batches(32, np.random.default_rng(3)))


@pytest.mark.parametrize("buckets", [0, 4])
def test_cut_batches_drop_only_padding_and_keep_every_target_once(data: PreparedData, buckets: int) -> None:
    full = SequenceBatches(data, 20)
    batches = _batches(data, trim=True, length_buckets=buckets)
    seen = []
    for owners, inputs, targets, weights in batches:
        assert inputs.shape == targets.shape == weights.shape and inputs.shape[1] <= 20
        assert (targets[:, 0] > 0).any()  # cut to the longest window: its first column is real
        seen.append(np.column_stack([owners.repeat(targets.shape[1]), targets.ravel()])[targets.ravel() > 0])
    got = np.concatenate(seen)
    want = np.column_stack([full.owners.repeat(20), full.targets.ravel()])[full.targets.ravel() > 0]
    assert len(got) == len(full)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, want.tolist()))


def test_length_buckets_make_batches_of_similar_length(data: PreparedData) -> None:
    def spread(batches: list[tuple[np.ndarray, ...]]) -> float:
        return float(np.mean([np.ptp((t > 0).sum(axis=1)) for _, _, t, _ in batches]))

    random_batches, bucketed = _batches(data, trim=True), _batches(data, trim=True, length_buckets=8)
    assert spread(bucketed) < spread(random_batches) / 2, (spread(bucketed), spread(random_batches))
    padded = sum(t.size for _, _, t, _ in bucketed)
    assert padded < sum(t.size for _, _, t, _ in random_batches)  # fewer positions computed for the same targets


def test_cutting_the_padding_trains_the_same_model(data: PreparedData) -> None:
    """Without dropout the cut batches give the same losses and the same weights, step for step."""
    exact = {**SEQUENCE["model.user_encoder"], "params": {"layers": 1, "heads": 1, "dropout": 0.0}}
    results = []
    for trim in (False, True):
        config = _config(trim_padding=trim, epochs=2, negatives=30, sampling="shared").with_overrides(
            {"model.user_encoder": exact})
        results.append(train(config, data, progress=False))
    losses = [[h["loss"] for h in r.history] for r in results]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for name, value in results[0].model.state_dict().items():
        torch.testing.assert_close(results[1].model.state_dict()[name], value, rtol=1e-3, atol=1e-5)


def test_a_block_whose_every_candidate_is_masked_adds_nothing_and_stays_finite() -> None:
    """All positions share one target: the in-batch block is that target alone, masked in every row."""
    dim = 4
    dot = DotInteractor(InteractorContext(dim))
    user = Encoded(vector=torch.randn(3, dim, generator=torch.Generator().manual_seed(0)).requires_grad_())
    table = torch.randn(10, dim, generator=torch.Generator().manual_seed(1)).requires_grad_()
    targets, negatives = torch.tensor([4, 4, 4]), torch.tensor([1, 2, 7])
    with_block = sampled_softmax_loss(dot, user, targets, table[targets], negatives, table[negatives],
                                      in_batch=torch.tensor([4]), in_batch_vectors=table[torch.tensor([4])])
    without = sampled_softmax_loss(dot, user, targets, table[targets], negatives, table[negatives])
    torch.testing.assert_close(with_block, without)
    with_block.sum().backward()
    assert torch.isfinite(user.vector.grad).all() and torch.isfinite(table.grad).all()


@pytest.mark.parametrize("shared", [0, 7])
@pytest.mark.parametrize("with_seen", [False, True])
def test_shared_and_in_batch_in_one_block_give_the_concatenated_loss(shared: int, with_seen: bool) -> None:
    """The fast path (in_batch_columns: one product, the target's in-batch column as its positive)
    equals the general one (a target column beside masked blocks) in value and gradient."""
    dim, items = 6, 30
    targets = torch.tensor([3, 9, 3, 14, 27, 9, 1, 14])
    in_batch, columns = torch.unique(targets, return_inverse=True)
    negatives = torch.tensor([3, 5, 9, 11, 22, 5, 30])[:shared] if shared else None
    sampler = NegativeSampler(items, np.arange(items + 1.0), 0.75)
    frequency = torch.bincount(targets, minlength=items + 1).float() / targets.numel()
    counts = CandidateCounts(sampler, shared, frequency, targets.numel())
    windows = torch.tensor([[0, 3, 5, 9, 2], [1, 14, 22, 27, 30]])
    seen = SeenItems(windows, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), torch.tensor([0, 1, 3, 4, 1, 2, 3, 4]),
                     items) if with_seen else None
    results = []
    for fast in (False, True):
        user = Encoded(vector=torch.randn(targets.numel(), dim, generator=torch.Generator().manual_seed(0))
                       .requires_grad_())
        table = torch.randn(items + 1, dim, generator=torch.Generator().manual_seed(1)).requires_grad_()
        temperature = torch.tensor(0.3, requires_grad=True)
        loss = sampled_softmax_loss(
            DotInteractor(InteractorContext(dim)), user, targets, table[targets], negatives,
            table[negatives] if negatives is not None else None, in_batch=in_batch, in_batch_vectors=table[in_batch],
            in_batch_columns=columns if fast else None, counts=counts, temperature=temperature, seen=seen)
        (loss * torch.arange(1.0, targets.numel() + 1)).sum().backward()
        results.append((loss.detach(), user.vector.grad, table.grad, temperature.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
