"""train.exclude_seen: a training position's already-seen items are no negatives of its softmax."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recengine import softmax
from recengine.components import Encoded, InteractorContext
from recengine.config import PipelineConfig
from recengine.errors import ConfigError
from recengine.plugins.interactors.dot import DotInteractor
from recengine.softmax import SeenItems, chunked_full_softmax_loss, full_softmax_loss, sampled_softmax_loss

ITEMS = 12
# two windows (0 = left padding); positions: (row, step) pairs of real targets
WINDOWS = torch.tensor([[0, 0, 3, 5, 3, 7], [2, 4, 6, 8, 10, 12]])
ROWS = torch.tensor([0, 0, 0, 1, 1, 1])
STEPS = torch.tensor([2, 3, 5, 0, 2, 5])


def _reference(ids: torch.Tensor) -> torch.Tensor:
    """Brute force: position p has seen the items of its row's window at columns 0..step."""
    ids = ids.expand(ROWS.numel(), -1) if ids.dim() == 1 else ids
    seen = torch.zeros(ids.shape, dtype=torch.bool)
    for p, (row, step) in enumerate(zip(ROWS.tolist(), STEPS.tolist(), strict=True)):
        prefix = {int(i) for i in WINDOWS[row, :step + 1] if i > 0}
        seen[p] = torch.tensor([int(i) in prefix for i in ids[p]])
    return seen


@pytest.mark.parametrize("dense", [True, False])
def test_seen_mask_matches_the_windows_for_every_candidate_shape(dense: bool, monkeypatch) -> None:
    if not dense:  # the [rows x window x candidates] path a large catalogue takes
        monkeypatch.setattr(softmax, "DENSE_SEEN_LIMIT", 0)
    seen = SeenItems(WINDOWS, ROWS, STEPS, ITEMS)
    shared = torch.tensor([3, 7, 1, 12, 5, 2])
    per_row = torch.randint(1, ITEMS + 1, (ROWS.numel(), 9), generator=torch.Generator().manual_seed(0))
    assert torch.equal(seen.mask(shared), _reference(shared))
    assert torch.equal(seen.mask(per_row), _reference(per_row))
    assert torch.equal(seen.mask(), _reference(torch.arange(ITEMS + 1)))
    assert not seen.mask()[:, 0].any()  # padding is never "seen"


def test_pairs_mode_sees_the_whole_history() -> None:
    histories = torch.tensor([[0, 0, 4, 9], [1, 2, 3, 4]])
    mask = SeenItems.of_histories(histories, ITEMS).mask()
    assert mask[0].nonzero().flatten().tolist() == [4, 9]
    assert mask[1].nonzero().flatten().tolist() == [1, 2, 3, 4]


def _user(positions: int, dim: int) -> Encoded:
    return Encoded(vector=torch.randn(positions, dim, generator=torch.Generator().manual_seed(3)).requires_grad_())


def test_full_softmax_drops_seen_items_but_never_the_target() -> None:
    dim = 6
    dot = DotInteractor(InteractorContext(dim))
    user, matrix = _user(ROWS.numel(), dim), torch.randn(ITEMS + 1, dim, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([5, 3, 9, 4, 8, 11])  # position 1's target 3 is in its window: it stays a candidate
    loss = full_softmax_loss(dot, user, matrix, targets, seen=SeenItems(WINDOWS, ROWS, STEPS, ITEMS))
    seen = _reference(torch.arange(ITEMS + 1))
    for p in range(ROWS.numel()):
        keep = [i for i in range(1, ITEMS + 1) if i == targets[p] or not seen[p, i]]
        logits = matrix[keep] @ user.vector[p]
        expected = -F.log_softmax(logits, 0)[keep.index(int(targets[p]))]
        torch.testing.assert_close(loss[p], expected)
    plain = full_softmax_loss(dot, user, matrix, targets)
    assert (loss <= plain + 1e-6).all() and (loss < plain).any()


@pytest.mark.parametrize("chunk", [1, 5, 100])
def test_chunked_full_softmax_with_seen_items_equals_the_full_one(chunk: int) -> None:
    dim, targets = 6, torch.tensor([5, 3, 9, 4, 8, 11])
    dot = DotInteractor(InteractorContext(dim))
    results = []
    for chunked in (False, True):
        user = _user(ROWS.numel(), dim)
        matrix = torch.randn(ITEMS + 1, dim, generator=torch.Generator().manual_seed(4)).requires_grad_()
        seen = SeenItems(WINDOWS, ROWS, STEPS, ITEMS)
        loss = (chunked_full_softmax_loss(dot, user, matrix, targets, chunk, seen=seen) if chunked
                else full_softmax_loss(dot, user, matrix, targets, seen=seen))
        loss.sum().backward()
        results.append((loss.detach(), user.vector.grad, matrix.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", ["shared", "per_row"])
def test_a_seen_sampled_negative_scores_as_if_absent(shape: str) -> None:
    dim = 6
    dot = DotInteractor(InteractorContext(dim))
    user, table = _user(ROWS.numel(), dim), torch.randn(ITEMS + 1, dim, generator=torch.Generator().manual_seed(5))
    targets = torch.tensor([5, 3, 9, 4, 8, 11])
    negatives = torch.tensor([3, 7, 1, 12, 2, 6])
    if shape == "per_row":
        negatives = negatives.expand(ROWS.numel(), -1)
    seen = SeenItems(WINDOWS, ROWS, STEPS, ITEMS)
    loss = sampled_softmax_loss(dot, user, targets, table[targets], negatives, table[negatives], seen=seen)
    flags = _reference(negatives)
    for p in range(ROWS.numel()):
        row = negatives if negatives.dim() == 1 else negatives[p]
        keep = row[~flags[p] & (row != targets[p])]
        alone = sampled_softmax_loss(dot, Encoded(vector=user.vector[p:p + 1]), targets[p:p + 1],
                                     table[targets[p:p + 1]], keep, table[keep])
        torch.testing.assert_close(loss[p:p + 1], alone)


def test_exclude_seen_is_an_option_of_the_softmax_objective() -> None:
    with pytest.raises(ConfigError, match="options of the softmax objective"):
        PipelineConfig(name="x").with_overrides({"train.objective": "bpr", "train.exclude_seen": True})


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import generated_shop

    return generated_shop(tmp_path_factory.mktemp("seen"), 80, 60, 3_000, 3)


def _pairs(shop, **user: bool):
    from recengine.dataset import prepare
    from recengine.feature_store import FeatureStore

    config = PipelineConfig(name="x").with_overrides({
        "model.user_encoder": {"name": "dense", "params": {"use_features": False, **user}}, "train.mode": "pairs",
        "train.exclude_seen": True, "train.epochs": 3, "train.patience": 3, "train.lr": 5e-3, "train.device": "cpu"})
    with FeatureStore(shop, read_only=True) as store:
        return config, prepare(store, config)


def test_pairs_mode_trains_without_the_history_in_the_negatives(shop) -> None:
    from recengine.train import train

    config, data = _pairs(shop, use_history=True)
    losses = [h["loss"] for h in train(config, data, progress=False).history]
    assert losses[-1] < losses[0], losses


def test_pairs_mode_without_a_history_refuses_rather_than_excluding_nothing(shop) -> None:
    from recengine.train import train

    config, data = _pairs(shop)
    with pytest.raises(ConfigError, match="reads no history"):
        train(config, data, progress=False)
