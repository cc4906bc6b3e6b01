"""The ``gru`` encoder: recengine's encoder contract, then what makes it a GRU."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from recengine.components import EncoderContext
from recengine.testing import DIM, LENGTH, NUM_ITEMS, check_encoder, default_features
from recengine_gru import GRUConfig, GRUEncoder


def test_keeps_the_encoder_contract() -> None:
    check_encoder(GRUEncoder, name="gru")  # shapes, masks, padding, empty batches, seeds, gradients


def test_keeps_the_contract_with_stacked_layers_and_dropout() -> None:
    check_encoder(GRUEncoder, name="gru", params={"layers": 2, "dropout": 0.3})


def build(max_history: int = LENGTH, **params: object) -> GRUEncoder:
    torch.manual_seed(0)
    table = torch.nn.Embedding(NUM_ITEMS + 1, DIM, padding_idx=0)
    context = EncoderContext("user", DIM, default_features("user"), NUM_ITEMS, max_history, embed_items=table)
    return GRUEncoder(context, GRUConfig(**params)).eval()


def encode(encoder: GRUEncoder, history: list[list[int]]):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return encoder({"ids": torch.ones(len(history), dtype=torch.long), "history": torch.tensor(history)})


def test_vector_is_the_last_position_and_padding_is_skipped() -> None:
    encoder = build(max_history=8)
    out = encode(encoder, [[0, 0, 0, 0, 0, 3, 7, 9]])
    assert torch.equal(out.vector, out.sequence[:, -1])
    assert torch.all(out.sequence[0, :5] == 0) and out.mask[0].tolist() == [False] * 5 + [True] * 3
    # a GRU has no positions: more left padding, or a gap (an unknown item), changes nothing
    more_padding = encode(encoder, [[0, 0, 0, 0, 0, 0, 0, 3, 7, 9][-8:]])
    gap = encode(encoder, [[0, 0, 0, 0, 3, 7, 0, 9]])
    assert torch.allclose(out.vector, more_padding.vector, atol=1e-6)
    assert torch.allclose(out.vector, gap.vector, atol=1e-6)


def test_is_causal_so_sequence_mode_can_train_it() -> None:
    encoder = build()
    history = [[0, 0, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6]]
    before = encode(encoder, history).sequence
    changed = [row[:-1] + [row[-1] % NUM_ITEMS + 1] for row in history]  # only the newest item differs
    after = encode(encoder, changed).sequence
    assert torch.allclose(before[:, :-1], after[:, :-1], atol=1e-6)
    assert not torch.allclose(before[:, -1], after[:, -1])


def test_a_user_without_history_gets_zeros() -> None:
    out = encode(build(), [[0] * LENGTH])
    assert torch.equal(out.vector, torch.zeros(1, DIM)) and not out.mask.any()


def test_refuses_the_item_role() -> None:
    context = EncoderContext("item", DIM, default_features("item"), NUM_ITEMS, LENGTH)
    with pytest.raises(ValueError, match="use it as the user encoder"):
        GRUEncoder(context, GRUConfig())


@pytest.mark.parametrize("params", [{"layers": 0}, {"dropout": 1.0}, {"hidden": 8}])
def test_config_rejects_bad_parameters(params: dict) -> None:
    with pytest.raises(ValidationError):
        GRUConfig(**params)
