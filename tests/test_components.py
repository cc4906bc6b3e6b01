"""Contract tests run over every registered encoder and interactor: shapes, masks, padding,
empty batches and determinism under a seed."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from recengine.components import EncoderContext, FeatureSpec, InteractorContext
from recengine.plugin_manager import PluginManager

DIM, ITEMS, USERS, LENGTH = 16, 30, 12, 6


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    pm = PluginManager()
    pm.load_builtins()
    return pm


def _item_table() -> torch.nn.Embedding:
    torch.manual_seed(0)
    return torch.nn.Embedding(ITEMS + 1, DIM, padding_idx=0)


def _build_encoder(manager: PluginManager, name: str, role: str, seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    table = _item_table()
    spec = FeatureSpec(num_ids=USERS if role == "user" else ITEMS, categorical={"genre": 5}, numeric=["age"],
                       vectors={"text": 8})  # "text" is the vector set the text encoder projects
    context = EncoderContext(role, DIM, spec, ITEMS, LENGTH, embed_items=table if role == "user" else None)
    encoder_class = manager.get("encoders", name)
    params = {"use_history": True} if name == "dense" and role == "user" else {}
    return encoder_class(context, encoder_class.Config(**params))


def _batch(size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    history = torch.randint(1, ITEMS + 1, (size, LENGTH), generator=generator)
    history[:, : LENGTH // 2] = 0  # left padding
    if size:
        history[0] = 0  # a user with no history at all
    return {
        "ids": torch.randint(1, USERS + 1, (size,), generator=generator),
        "history": history,
        "cat:genre": torch.randint(0, 5, (size,), generator=generator),
        "num:age": torch.randn(size, generator=generator),
        "vec:text": torch.randn(size, 8, generator=generator),
    }


def _user_roles(manager: PluginManager):  # type: ignore[no-untyped-def]
    """Every (encoder, role) pair the registry offers, from each encoder's declared roles."""
    return [(name, role) for name in manager.names("encoders") for role in manager.get("encoders", name).roles]


@pytest.mark.parametrize("size", [0, 1, 5])
def test_encoders_output_shapes_and_masks(manager: PluginManager, size: int) -> None:
    for name, role in _user_roles(manager):
        encoder = _build_encoder(manager, name, role).eval()
        out = encoder(_batch(size))
        assert out.vector.shape == (size, encoder.output_dim), name
        assert torch.isfinite(out.vector).all(), name
        if getattr(encoder, "produces_sequence", False) or out.sequence is not None:
            assert out.sequence.shape == (size, LENGTH, DIM)
            assert out.mask.shape == (size, LENGTH) and out.mask.dtype == torch.bool
            assert torch.equal(out.mask, _batch(size)["history"] > 0)
            assert torch.isfinite(out.sequence).all()


def test_encoders_deterministic_under_seed(manager: PluginManager) -> None:
    for name, role in _user_roles(manager):
        first = _build_encoder(manager, name, role, seed=3).eval()(_batch(4)).vector
        second = _build_encoder(manager, name, role, seed=3).eval()(_batch(4)).vector
        assert torch.equal(first, second), name


def test_ease_is_closed_form_item_item(manager: PluginManager) -> None:
    """EASE's B has a zero diagonal and scores co-occurring items above unrelated ones."""
    item = _build_encoder(manager, "ease", "item")
    users = torch.arange(1, 7).repeat_interleave(2).numpy()
    items = torch.tensor([1, 2] * 3 + [3, 4] * 3).numpy()  # 1 with 2, 3 with 4
    item.fit(users, items)
    weights = item.weights
    assert torch.all(weights.diagonal() == 0)
    assert weights[1, 2] > 0 and weights[1, 2] > weights[1, 3]
    user = _build_encoder(manager, "ease", "user")(
        {"ids": torch.tensor([1]), "history": torch.tensor([[0, 1]])}).vector
    scores = user @ item({"ids": torch.arange(ITEMS + 1)}).vector.T
    assert scores[0, 2] > scores[0, 3]


def test_transformer_is_causal(manager: PluginManager) -> None:
    encoder = _build_encoder(manager, "transformer", "user").eval()
    batch = _batch(3)
    before = encoder(batch).sequence
    batch["history"][:, -1] = (batch["history"][:, -1] % ITEMS) + 1  # change only the newest item
    after = encoder(batch).sequence
    assert torch.allclose(before[:, :-1], after[:, :-1], atol=1e-6)  # earlier positions cannot see it
    assert not torch.allclose(before[:, -1], after[:, -1])


@pytest.mark.parametrize("size", [0, 4])
def test_interactors_pairs_candidates_and_catalogue(manager: PluginManager, size: int) -> None:
    user = _build_encoder(manager, "transformer", "user").eval()(_batch(size))
    items = torch.randn(size, DIM)
    candidates = torch.randn(size, 7, DIM)
    catalogue = torch.randn(ITEMS + 1, DIM)
    for name in manager.names("interactors"):
        interactor_class = manager.get("interactors", name)
        interactor = interactor_class(InteractorContext(DIM), interactor_class.Config()).eval()
        assert interactor.score(user, items).shape == (size,)
        assert interactor.score(user, candidates).shape == (size, 7)
        full = interactor.score_all(user, catalogue)
        assert full.shape == (size, ITEMS + 1) and torch.isfinite(full).all()
        # pair, candidate and catalogue scoring agree with each other
        if size:
            assert torch.allclose(interactor.score(user, catalogue[3].expand(size, DIM)), full[:, 3], atol=1e-4)


def test_dot_is_formula_4_1(manager: PluginManager) -> None:
    user = _build_encoder(manager, "dense", "item").eval()(_batch(2))
    items = torch.randn(2, DIM)
    dot = manager.get("interactors", "dot")(InteractorContext(DIM))
    expected = torch.stack([sum(user.vector[b, k] * items[b, k] for k in range(DIM)) for b in range(2)])
    assert torch.allclose(dot.score(user, items), expected, atol=1e-5)


def test_attention_weights_are_a_softmax_over_real_history(manager: PluginManager) -> None:
    user = _build_encoder(manager, "transformer", "user").eval()(_batch(4))
    attention_class = manager.get("interactors", "attention")
    attention = attention_class(InteractorContext(DIM), attention_class.Config())
    weights = attention.explain(user, torch.randn(4, 5, DIM))
    assert weights.shape == (4, 5, LENGTH)
    assert torch.all(weights[:, :, ~user.mask[1]] == 0)  # padding gets no weight
    assert torch.allclose(weights[1:].sum(-1), torch.ones(3, 5), atol=1e-5)
    assert torch.all(weights[0] == 0)  # the user without history attends to nothing


@pytest.mark.parametrize("include_pooled", [True, False])
def test_attention_scores_the_shared_catalogue_as_it_scores_candidates(manager: PluginManager,
                                                                       include_pooled: bool) -> None:
    """``score_all`` projects each item once and never builds [B, items, d]: the same scores and
    the same gradients as scoring the catalogue as every user's candidates, padding users too."""
    attention_class = manager.get("interactors", "attention")
    attention = attention_class(InteractorContext(DIM), attention_class.Config(include_pooled=include_pooled,
                                                                                chunk=3))
    user = _build_encoder(manager, "transformer", "user").eval()(_batch(4))  # user 0 has no history
    catalogue = torch.randn(ITEMS + 1, DIM, requires_grad=True)
    shared = attention.score_all(user, catalogue)
    per_user = attention.score(user, catalogue.unsqueeze(0).expand(4, -1, -1))
    torch.testing.assert_close(shared, per_user, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(shared)
    parameters = [catalogue, *attention.parameters()]
    for got, want in zip(torch.autograd.grad((shared * weights).sum(), parameters, retain_graph=True),
                         torch.autograd.grad((per_user * weights).sum(), parameters)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_component_configs_reject_bad_parameters(manager: PluginManager) -> None:
    for family in ("encoders", "interactors", "rankers"):
        for name in manager.names(family):
            with pytest.raises(ValidationError):
                manager.get(family, name).Config(no_such_parameter=1)
