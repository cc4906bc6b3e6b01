"""Contract checks for recengine components: the checks every built-in passes, for plugin authors.

A plugin's tests call one function per component::

    from recengine.testing import check_encoder, check_interactor, check_ranker

    def test_gru_keeps_the_encoder_contract():
        check_encoder(GRUEncoder)                      # every role it declares

    def test_boost_rule_keeps_the_ranker_contract():
        check_ranker(BoostRule, params={"column": "category", "boost": ["a"]})

or checks everything a loaded plugin registered: ``check_plugin(manager, "recengine_gru")``.
Each check raises ``AssertionError`` naming the component (and its plugin, when known) and
what is wrong, with the expected next to the actual value. They need no pytest, run on CPU
on tiny synthetic inputs (well under a second each) and leave the global torch RNG as they
found it.

What is checked:

- every component: ``Config`` is a pydantic model whose defaults validate (or ``params``) and
  which rejects unknown parameters;
- encoders (per role): ``vector`` is [B, output_dim] for B = 0, 1 and 5; sequence encoders
  (``produces_sequence``) and any encoder returning a sequence give ``sequence`` [B, L, dim]
  and a boolean ``mask`` [B, L] equal to ``history > 0``; everything is finite, including a
  user without any history, left padding and a gap inside the history; a row encodes the same
  alone as inside a batch; two builds under the same seed agree exactly; gradients reach the
  parameters; ``fit(users, items)`` is called first (a no-op unless the encoder overrides it);
  an encoder declaring ``embeds_text`` implements ``embed_texts``;
- interactors: ``score`` gives [B] for pairs and [B, K] for candidates, ``score_all`` [B, N]
  and all three agree; ``explain`` returns None or finite [B, K, L] weights that are zero on
  padding; empty batches work; interactors that do not need a sequence work from ``vector``
  alone, those that do (``needs_sequence``) raise ``ValueError`` without one; those that
  declare ``uses_sequence = False`` score the same with and without one; determinism;
- rankers: empty candidates give a valid empty-or-not list; the input candidates and the
  request context are never mutated (nor their reason lists); the output is a
  :class:`~recengine.components.Candidates` (the input itself is fine) with aligned columns, integer catalogue items
  (never the padding item 0, no duplicates) and reasons as lists of strings; the same
  request gives the same answer twice and from a fresh instance.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MethodType
from typing import Any, cast

import numpy as np
import torch
from pydantic import BaseModel, ValidationError
from torch import Tensor, nn

from recengine.components import (
    Candidates,
    Catalog,
    ComponentConfig,
    Encoded,
    Encoder,
    EncoderContext,
    FeatureSpec,
    Interactor,
    InteractorContext,
    RankContext,
    Ranker,
    SegmentPopularity,
)
from recengine.event_times import HISTORY_TS, QUERY_TS

__all__ = [
    "CHECKED_FAMILIES", "DIM", "NUM_ITEMS", "NUM_USERS", "LENGTH", "CheckResult",
    "check_encoder", "check_interactor", "check_ranker", "check_component", "check_plugin", "run_checks",
    "default_features", "encoder_batch", "make_catalog", "rank_contexts", "sample_candidates",
]

DIM, NUM_ITEMS, NUM_USERS, LENGTH = 16, 30, 12, 6
BATCH_SIZES = (0, 1, 5)
CHECKED_FAMILIES = ("encoders", "interactors", "rankers")
_ATOL = 1e-5


# ---------------------------------------------------------------------------------------
# naming and small helpers
# ---------------------------------------------------------------------------------------


def _label(kind: str, component: Any, name: str | None, plugin: str | None) -> str:
    """``encoder 'gru' (plugin recengine_gru, recengine_gru.gru.GRUEncoder)``."""
    where = f"{getattr(component, '__module__', '?')}.{getattr(component, '__qualname__', repr(component))}"
    title = f"{kind} {name!r}" if name else f"{kind} {where}"
    details = [f"plugin {plugin}"] if plugin else []
    if name:
        details.append(where)
    return f"{title} ({', '.join(details)})" if details else title


def _fail(label: str, message: str) -> AssertionError:
    return AssertionError(f"{label}: {message}")


def _expect(condition: bool, label: str, message: str) -> None:
    if not condition:
        raise _fail(label, message)


def _shape(tensor: Any) -> tuple[int, ...] | str:
    return tuple(tensor.shape) if hasattr(tensor, "shape") else type(tensor).__name__


def _check_config(component: Any, params: dict[str, Any] | None, label: str) -> ComponentConfig:
    """``Config`` is a pydantic model: ``params`` (or its defaults) validate, unknown keys fail."""
    config_class = component.Config  # declared by every base class; a plugin may have overridden it badly
    _expect(isinstance(config_class, type) and issubclass(config_class, BaseModel), label,
            f"Config must be a pydantic model (subclass recengine.components.ComponentConfig), got {config_class!r}")
    try:
        config = config_class(**(params or {}))
    except ValidationError as exc:
        what = f"parameters {params}" if params else "default parameters"
        raise _fail(label, f"its {what} do not validate: {exc}") from None
    try:
        config_class(no_such_parameter=1)
    except ValidationError:
        pass
    else:
        raise _fail(label, "Config accepted an unknown parameter 'no_such_parameter'; "
                           "subclass recengine.components.ComponentConfig (extra='forbid')")
    return config


# ---------------------------------------------------------------------------------------
# encoders
# ---------------------------------------------------------------------------------------


def default_features(role: str) -> FeatureSpec:
    """The features the checks offer an encoder: a categorical, a numeric, a vector set ``text``."""
    return FeatureSpec(num_ids=NUM_USERS if role == "user" else NUM_ITEMS, categorical={"genre": 5},
                       numeric=["age"], vectors={"text": 8})


def encoder_batch(size: int, features: FeatureSpec, length: int = LENGTH, seed: int = 1,
                  times: bool = False) -> dict[str, Tensor]:
    """A batch as the engine builds one: ``ids``, left-padded ``history`` and the features
    (``times``: also ``history_ts`` and ``query_ts``, as for an encoder that reads event times).

    Row 0 has no history at all; row 2 has a gap (an item unknown to the model, index 0)
    between real items, as the Recommender produces for items newer than the model.
    """
    generator = torch.Generator().manual_seed(seed)
    history = torch.randint(1, NUM_ITEMS + 1, (size, length), generator=generator)
    history[:, : length // 2] = 0  # left padding
    if size:
        history[0] = 0  # a user with no history at all
    if size > 2 and length > 2:
        history[2, -2] = 0  # a gap inside the history
    batch = {
        "ids": torch.randint(1, features.num_ids + 1, (size,), generator=generator),
        "history": history,
    }
    for name, vocabulary in features.categorical.items():
        batch[f"cat:{name}"] = torch.randint(0, vocabulary, (size,), generator=generator)
    for name in features.numeric:
        batch[f"num:{name}"] = torch.randn(size, generator=generator)
    for name, width in features.vectors.items():
        batch[f"vec:{name}"] = torch.randn(size, width, generator=generator)
    if times:  # increasing event times a few seconds to days apart, 0 on padding; the query an hour later
        gaps = torch.randint(1, 200_000, (size, length), generator=generator)
        stamps = 1_700_000_000 + gaps.cumsum(dim=1)
        batch[HISTORY_TS] = torch.where(history > 0, stamps, torch.zeros_like(stamps))
        batch[QUERY_TS] = stamps[:, -1] + 3_600
    return batch


def _row(batch: dict[str, Tensor], index: int) -> dict[str, Tensor]:
    return {key: value[index:index + 1] for key, value in batch.items()}


def _build_encoder(encoder_class: type, role: str, config: ComponentConfig, features: FeatureSpec,
                   dim: int, seed: int, label: str) -> Encoder:
    torch.manual_seed(seed)
    table = nn.Embedding(NUM_ITEMS + 1, dim, padding_idx=0)
    context = EncoderContext(role, dim, features, NUM_ITEMS, LENGTH, embed_items=table if role == "user" else None)
    try:
        encoder = encoder_class(context, config)
    except Exception as exc:
        raise _fail(label, f"cannot be built as the {role} encoder: {type(exc).__name__}: {exc}") from exc
    users = np.repeat(np.arange(1, NUM_USERS + 1), 3)
    items = (np.arange(users.size) % NUM_ITEMS) + 1
    try:
        encoder.fit(users, items)  # closed-form encoders (EASE); the base class's fit does nothing
    except Exception as exc:
        raise _fail(label, f"fit(users, items) failed as the {role} encoder: {type(exc).__name__}: {exc}") from exc
    return encoder


def _encode(encoder: Encoder, batch: dict[str, Tensor], label: str, role: str) -> Encoded:
    try:
        out = encoder(batch)
    except Exception as exc:
        size = batch["ids"].shape[0]
        raise _fail(label, f"forward failed on a batch of {size} ({role} role): {type(exc).__name__}: {exc}") from exc
    _expect(isinstance(out, Encoded), label,
            f"forward must return recengine.components.Encoded, got {type(out).__name__}")
    return out


def check_encoder(encoder_class: type, roles: Iterable[str] | None = None, *, name: str | None = None,
                  plugin: str | None = None, params: dict[str, Any] | None = None,
                  features: dict[str, FeatureSpec] | FeatureSpec | None = None, dim: int = DIM,
                  seed: int = 0) -> None:
    """Check an encoder class against the encoder contract in each of ``roles``.

    ``roles`` defaults to the roles the class declares (``Encoder.roles``); ``params`` are its
    config parameters; ``features`` replaces :func:`default_features` (one spec, or one per
    role). ``name``/``plugin`` only make failure messages name the component.
    """
    label = _label("encoder", encoder_class, name, plugin)
    if not (isinstance(encoder_class, type) and issubclass(encoder_class, Encoder)):
        raise _fail(label, "must be a subclass of recengine.components.Encoder")
    declared = tuple(encoder_class.roles)
    _expect(bool(declared) and set(declared) <= {"user", "item"}, label,
            f"roles must be a non-empty subset of ('user', 'item'), got {declared}")
    if encoder_class.embeds_text:  # a classmethod read from its class is bound: __func__ tells an override apart
        own = cast(MethodType, encoder_class.embed_texts).__func__
        _expect(own is not cast(MethodType, Encoder.embed_texts).__func__, label,
                "embeds_text is True but the class does not implement embed_texts")
    roles = tuple(roles) if roles is not None else declared
    undeclared = [role for role in roles if role not in declared]
    _expect(not undeclared, label, f"checked as {undeclared} but declares roles {declared}")
    config = _check_config(encoder_class, params, label)
    with torch.random.fork_rng(devices=[]):
        for role in roles:
            spec = features.get(role, default_features(role)) if isinstance(features, dict) else (
                features or default_features(role))
            _check_encoder_role(encoder_class, role, config, spec, dim, seed, f"{label} as {role} encoder")


def _check_encoder_role(encoder_class: type[Encoder], role: str, config: ComponentConfig, spec: FeatureSpec,
                        dim: int, seed: int, label: str) -> None:
    encoder = _build_encoder(encoder_class, role, config, spec, dim, seed, label).eval()
    times = bool(encoder_class.reads_event_times(config.model_dump()))  # its batches carry event times
    output_dim = encoder.output_dim
    _expect(isinstance(output_dim, int) and output_dim > 0, label,
            f"output_dim must be a positive int, got {output_dim!r}")
    sequence_encoder = bool(encoder_class.produces_sequence)
    with torch.no_grad():
        for size in BATCH_SIZES:
            batch = encoder_batch(size, spec, times=times)
            out = _encode(encoder, batch, label, role)
            expected = (size, output_dim)
            _expect(_shape(out.vector) == expected, label,
                    f"vector shape: expected {expected} ([batch, output_dim]) for a batch of {size}, "
                    f"got {_shape(out.vector)}")
            _expect(out.vector.dtype.is_floating_point, label, f"vector must be floating point, got {out.vector.dtype}")
            if size:
                _expect(bool(torch.isfinite(out.vector[0]).all()), label,
                        "vector is not finite for a user without history (all padding)")
            _expect(bool(torch.isfinite(out.vector).all()), label, f"vector is not finite for a batch of {size}")
            if sequence_encoder:
                _expect(out.sequence is not None and out.mask is not None, label,
                        "produces_sequence is True but forward returned no sequence/mask")
            if out.sequence is not None:
                length = batch["history"].shape[1]
                expected_sequence = (size, length, dim)
                _expect(_shape(out.sequence) == expected_sequence, label,
                        f"sequence shape: expected {expected_sequence} ([batch, history length, dim]), "
                        f"got {_shape(out.sequence)}")
                if out.mask is None or _shape(out.mask) != (size, length):
                    raise _fail(label, f"mask shape: expected {(size, length)}, got {_shape(out.mask)}")
                _expect(out.mask.dtype == torch.bool, label, f"mask must be torch.bool, got {out.mask.dtype}")
                _expect(torch.equal(out.mask, batch["history"] > 0), label,
                        "mask must be True exactly where history > 0 (real items) and False on padding")
                _expect(bool(torch.isfinite(out.sequence).all()), label,
                        "sequence is not finite (padding positions and users without history included)")
            if size > 1:  # each row alone encodes as it does inside the batch
                for index in range(size):
                    alone = _encode(encoder, _row(batch, index), label, role).vector
                    if not torch.allclose(alone[0], out.vector[index], atol=1e-4, rtol=1e-4):
                        difference = float((alone[0] - out.vector[index]).abs().max())
                        raise _fail(label, f"row {index} encodes differently alone than in a batch of {size} "
                                           f"(max difference {difference:.3g}): rows must not interact in eval mode")
        batch = encoder_batch(4, spec, times=times)
        first = _encode(encoder, batch, label, role).vector
        _expect(torch.equal(first, _encode(encoder, batch, label, role).vector), label,
                "two forward passes in eval mode differ (dropout or randomness outside training?)")
        again = _build_encoder(encoder_class, role, config, spec, dim, seed, label).eval()
        _expect(torch.equal(first, _encode(again, batch, label, role).vector), label,
                f"two builds under torch.manual_seed({seed}) give different vectors: not deterministic under a seed")
    _check_gradients(encoder, spec, label, role, times)


def _check_gradients(encoder: Encoder, spec: FeatureSpec, label: str, role: str, times: bool = False) -> None:
    """In train mode a loss on the outputs reaches the encoder's own parameters."""
    own = [p for p in encoder.parameters() if p.requires_grad]
    if not own:  # closed-form (EASE) or frozen encoders learn nothing by gradient
        return
    encoder.train()
    encoder.zero_grad(set_to_none=True)
    out = _encode(encoder, encoder_batch(5, spec, times=times), label, role)
    loss = out.vector.float().pow(2).sum()
    if out.sequence is not None:
        loss = loss + out.sequence.float().pow(2).sum()
    loss.backward()
    grads = [p.grad for p in own if p.grad is not None]
    _expect(bool(grads), label, "no gradient reaches its parameters (outputs detached from them?)")
    _expect(all(bool(torch.isfinite(g).all()) for g in grads), label, "gradients are not finite")
    encoder.zero_grad(set_to_none=True)
    encoder.eval()


# ---------------------------------------------------------------------------------------
# interactors
# ---------------------------------------------------------------------------------------


def _user(size: int, dim: int, with_sequence: bool = True, seed: int = 2) -> Encoded:
    """A synthetic user representation: vector, and a masked sequence (row 0 without history)."""
    generator = torch.Generator().manual_seed(seed)
    history = encoder_batch(size, default_features("user"))["history"]
    mask = history > 0
    vector = torch.randn(size, dim, generator=generator)
    if not with_sequence:
        return Encoded(vector)
    sequence = torch.randn(size, history.shape[1], dim, generator=generator) * mask.unsqueeze(-1)
    return Encoded(vector, sequence, mask)


def check_interactor(interactor_class: type, *, name: str | None = None, plugin: str | None = None,
                     params: dict[str, Any] | None = None, dim: int = DIM, seed: int = 0) -> None:
    """Check an interactor class: score/score_all/explain shapes, agreement, empty batches."""
    label = _label("interactor", interactor_class, name, plugin)
    if not (isinstance(interactor_class, type) and issubclass(interactor_class, Interactor)):
        raise _fail(label, "must be a subclass of recengine.components.Interactor")
    config = _check_config(interactor_class, params, label)

    def build() -> Interactor:
        torch.manual_seed(seed)
        try:
            return interactor_class(InteractorContext(dim), config).eval()
        except Exception as exc:
            raise _fail(label, f"cannot be built: {type(exc).__name__}: {exc}") from exc

    needs_sequence = bool(interactor_class.needs_sequence)
    with torch.random.fork_rng(devices=[]):
        interactor = build()
        generator = torch.Generator().manual_seed(3)
        catalogue = torch.randn(NUM_ITEMS + 1, dim, generator=generator)
        with torch.no_grad():
            for size in (0, 1, 4):
                for with_sequence in ((True,) if needs_sequence else (True, False)):
                    what = f"a batch of {size}" + ("" if with_sequence else " without a sequence")
                    _check_scores(interactor, _user(size, dim, with_sequence), catalogue, label, what)
            if needs_sequence:
                try:
                    interactor.score(_user(2, dim, with_sequence=False), catalogue[:2])
                except ValueError:
                    pass
                except Exception as exc:
                    raise _fail(label, "needs_sequence is True: a user without a sequence must raise ValueError "
                                       f"with a clear message, got {type(exc).__name__}: {exc}") from exc
                else:
                    raise _fail(label, "needs_sequence is True but it scored a user without a sequence")
            if not interactor_class.uses_sequence:
                _expect(not needs_sequence, label, "uses_sequence is False but needs_sequence is True")
                sequenced, without = _user(4, dim), _user(4, dim, with_sequence=False)
                _expect(torch.allclose(interactor.score_all(sequenced, catalogue),
                                       interactor.score_all(without, catalogue)), label,
                        "uses_sequence is False but its scores change with user.sequence: serving would score "
                        "from cached user vectors and get them wrong")
            user = _user(4, dim)
            first = interactor.score_all(user, catalogue)
            _expect(torch.equal(first, build().score_all(user, catalogue)), label,
                    f"two builds under torch.manual_seed({seed}) score differently: not deterministic under a seed")
        own = [p for p in interactor.parameters() if p.requires_grad]
        if own:
            interactor.train()
            interactor.score(_user(4, dim), catalogue[1:5]).sum().backward()
            _expect(any(p.grad is not None for p in own), label, "no gradient reaches its parameters")
            interactor.zero_grad(set_to_none=True)


def _check_scores(interactor: Interactor, user: Encoded, catalogue: Tensor, label: str, what: str) -> None:
    size, candidates = user.vector.shape[0], 7
    try:
        pairs = interactor.score(user, catalogue[1:size + 1] if size else catalogue[:0])
        picked = (torch.arange(size * candidates) % (catalogue.shape[0] - 1) + 1).view(size, candidates)
        scored = interactor.score(user, catalogue[picked])
        full = interactor.score_all(user, catalogue)
        weights = interactor.explain(user, catalogue[picked])
    except Exception as exc:
        raise _fail(label, f"failed on {what}: {type(exc).__name__}: {exc}") from exc
    _expect(_shape(pairs) == (size,), label,
            f"score(user, items [B, d]): expected shape {(size,)}, got {_shape(pairs)}")
    _expect(_shape(scored) == (size, candidates), label,
            f"score(user, items [B, K, d]): expected shape {(size, candidates)}, got {_shape(scored)}")
    expected_full = (size, catalogue.shape[0])
    _expect(_shape(full) == expected_full, label,
            f"score_all(user, item_matrix [N, d]): expected shape {expected_full}, got {_shape(full)}")
    for tensor, name in ((pairs, "score (pairs)"), (scored, "score (candidates)"), (full, "score_all")):
        _expect(bool(torch.isfinite(tensor).all()), label, f"{name} is not finite on {what}")
    if size:
        _expect(torch.allclose(scored, full.gather(1, picked), atol=1e-4, rtol=1e-4), label,
                f"score on candidates and score_all disagree on {what}")
        _expect(torch.allclose(pairs, full[torch.arange(size), torch.arange(1, size + 1)], atol=1e-4, rtol=1e-4),
                label, f"score on pairs and score_all disagree on {what}")
    if weights is not None:
        length = user.mask.shape[1] if user.mask is not None else None
        if user.mask is None or _shape(weights) != (size, candidates, length):
            raise _fail(label, f"explain: expected None or weights of shape {(size, candidates, length)}, "
                               f"got {_shape(weights)}")
        _expect(bool(torch.isfinite(weights).all()), label, f"explain weights are not finite on {what}")
        _expect(bool((weights * (~user.mask).unsqueeze(1)).abs().sum() == 0), label,
                f"explain gives weight to padding positions on {what}")


# ---------------------------------------------------------------------------------------
# rankers
# ---------------------------------------------------------------------------------------


T0 = datetime(2024, 3, 1)


def make_catalog(size: int = 20) -> Catalog:
    """A small catalogue: categories a/b/c, list-valued ``genres``, ``brand`` with a missing
    value, ``price``, ``created_at`` 12 hours apart (one undated), clustered vectors, and
    popularity rising with the index except a few hits (the padding item 0 is the most
    "popular": it must never be recommended)."""
    rng = np.random.default_rng(0)
    index = np.arange(size + 1)
    thirds = [(i - 1) * 3 // size for i in range(1, size + 1)]
    category = np.array([""] + ["abc"[t] for t in thirds], dtype=object)
    centres = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [0.0, 0.0, 1.0], "": [0.0, 0.0, 0.0]}
    vectors = np.array([centres[c] for c in category]) + 0.05 * rng.standard_normal((size + 1, 3))
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    created = np.array([np.datetime64("NaT")] + [np.datetime64(T0 + timedelta(hours=12 * (i - 1)), "us")
                                                 for i in range(1, size + 1)], dtype="datetime64[us]")
    created[min(14, size)] = np.datetime64("NaT")  # one undated item
    genres = np.empty(size + 1, dtype=object)
    for i in index:
        genres[i] = ["drama", "comedy"] if i % 4 == 0 else (["drama"] if i % 2 else [])
    brand = np.array([None] + [f"brand{i % 2}" if i != 5 else None for i in range(1, size + 1)], dtype=object)
    popularity = index.astype(np.float64)
    hits = [i for i in (3, 9, 16) if i <= size]
    popularity[hits] = [100.0, 90.0, 80.0][: len(hits)]
    popularity[0] = 1000.0
    return Catalog(
        item_ids=np.array([""] + [f"i{i}" for i in range(1, size + 1)], dtype=object),
        columns={"category": category, "created_at": created, "genres": genres, "brand": brand,
                 "price": index * 10.0,
                 "item_id": np.array([None] + [f"i{i}" for i in range(1, size + 1)], dtype=object)},
        vectors=vectors.astype(np.float32),
        popularity=popularity,
        titles=np.array([""] + [f"Item {i}" for i in range(1, size + 1)], dtype=object),
    )


def sample_candidates(catalog: Catalog, seed: int = 1) -> Candidates:
    """Every catalogue item, shuffled, scored so that a higher index scores higher, each
    with the reason ``"model"``."""
    size = catalog.size
    items = np.random.default_rng(seed).permutation(np.arange(1, size + 1)).astype(np.int64)
    scores = np.linspace(-1.0, 1.0, size, dtype=np.float32)[items - 1]
    return Candidates(items, scores, [["model"] for _ in range(size)])


def rank_contexts(catalog: Catalog | None = None) -> dict[str, RankContext]:
    """Requests as the Recommender builds them: a known user (history, event types, times,
    attributes, another user's follows), an unknown user (with segment popularity), and a
    request without ``now`` but with an exclusion."""
    catalog = catalog or make_catalog()
    size = catalog.size
    item_index = {str(catalog.item_ids[i]): i for i in range(1, size + 1)}
    newest = T0 + timedelta(hours=12 * (size - 1))
    history = np.array([2, 4, 6], dtype=np.int64)

    def history_of(user_id: str) -> tuple[list[str], list[str]]:
        return [str(catalog.item_ids[i]) for i in (8, 10, 12)], ["follow", "follow", "view"]

    counts = np.zeros(size + 1)
    counts[1: size + 1] = np.arange(size, 0, -1)
    segment = SegmentPopularity(counts, np.argsort(-counts[1:], kind="stable") + 1, "country: xx")
    base: dict[str, Any] = dict(user_id="u1", k=5, catalog=catalog, item_index=item_index)
    return {
        "known": RankContext(**base, history=history, history_event_types=["view", "purchase", "follow"],
                             history_ts=[T0 + timedelta(hours=h) for h in (1, 2, 3)], now=newest,
                             user_attributes={"country": "xx", "age": 30}, history_of=history_of),
        "unknown": RankContext(**{**base, "user_id": "new"}, history=np.zeros(0, dtype=np.int64), known_user=False,
                               now=newest, segment_popularity=lambda: segment),
        "no-now": RankContext(**base, history=history, history_event_types=["view", "view", "view"],
                              exclude=np.array([7], dtype=np.int64)),
    }


def _check_valid(out: Any, catalog: Catalog, label: str, what: str) -> None:
    _expect(isinstance(out, Candidates), label, f"rank must return recengine.components.Candidates on {what}, "
                                                f"got {type(out).__name__}")
    items, scores, reasons = out.items, out.scores, out.reasons
    _expect(isinstance(items, np.ndarray) and items.ndim == 1 and np.issubdtype(items.dtype, np.integer), label,
            f"items must be a 1-d integer array on {what}, got {_shape(items)} {getattr(items, 'dtype', '')}")
    _expect(isinstance(scores, np.ndarray) and np.issubdtype(scores.dtype, np.floating), label,
            f"scores must be a floating-point array on {what}")
    _expect(len(items) == len(scores) == len(reasons), label,
            f"items, scores and reasons must align on {what}: {len(items)}, {len(scores)}, {len(reasons)}")
    _expect(all(isinstance(r, list) and all(isinstance(s, str) for s in r) for r in reasons), label,
            f"every reason must be a list of strings on {what}")
    listed = items.tolist()
    _expect(all(1 <= i <= catalog.size for i in listed), label,
            f"items must be catalogue indices 1..{catalog.size} (0 is padding) on {what}, got {sorted(set(listed))}")
    _expect(len(set(listed)) == len(listed), label, f"duplicate items on {what}: {listed}")


def check_ranker(ranker_class: type, *, name: str | None = None, plugin: str | None = None,
                 params: dict[str, Any] | None = None, contexts: dict[str, RankContext] | None = None,
                 candidates: Candidates | None = None) -> None:
    """Check a ranker class: valid output, no mutation of its input, determinism.

    ``contexts`` (default :func:`rank_contexts`) and ``candidates`` (default: every item of
    the contexts' catalogue, shuffled) let a ranker that needs particular columns bring them.
    """
    label = _label("ranker", ranker_class, name, plugin)
    _expect(isinstance(ranker_class, type) and issubclass(ranker_class, Ranker), label,
            "must be a subclass of recengine.components.Ranker")
    config = _check_config(ranker_class, params, label)

    def build() -> Ranker:
        try:
            return ranker_class(config)
        except Exception as exc:
            raise _fail(label, f"cannot be built: {type(exc).__name__}: {exc}") from exc

    contexts = contexts or rank_contexts()
    ranker = build()
    for context_name, context in contexts.items():
        catalog = context.catalog
        given = candidates if candidates is not None else sample_candidates(catalog)
        for what, cands in ((f"empty candidates, {context_name} request", Candidates.empty()),
                            (f"{len(given)} candidates, {context_name} request", given)):
            before = copy.deepcopy(cands)
            reason_ids = [id(r) for r in cands.reasons]
            context_before = (np.array(context.history, copy=True), np.array(context.exclude, copy=True),
                              copy.deepcopy(context.filters), list(context.history_event_types))
            try:
                out = ranker.rank(cands, context)
            except Exception as exc:
                raise _fail(label, f"rank failed on {what}: {type(exc).__name__}: {exc}") from exc
            _expect(np.array_equal(cands.items, before.items) and
                    np.array_equal(cands.scores, before.scores, equal_nan=True), label,
                    f"rank mutated its input items or scores ({what})")
            _expect(cands.reasons == before.reasons and [id(r) for r in cands.reasons] == reason_ids, label,
                    f"rank mutated its input reasons ({what}): build new lists (reasons[i] + ['why']), never append")
            _expect(np.array_equal(context.history, context_before[0]) and
                    np.array_equal(context.exclude, context_before[1]) and context.filters == context_before[2] and
                    list(context.history_event_types) == context_before[3], label,
                    f"rank mutated the request context ({what})")
            _check_valid(out, catalog, label, what)
            runs = [ranker.rank(cands, context), build().rank(cands, context)]
            for other in runs:
                _expect(np.array_equal(other.items, out.items) and
                        np.array_equal(other.scores, out.scores, equal_nan=True) and other.reasons == out.reasons,
                        label, f"not deterministic: the same request ranked twice differs ({what})")


# ---------------------------------------------------------------------------------------
# registered components
# ---------------------------------------------------------------------------------------

_CHECKS: dict[str, Callable[..., None]] = {
    "encoders": check_encoder, "interactors": check_interactor, "rankers": check_ranker}


def check_component(family: str, component: type, **kwargs: Any) -> None:
    """Dispatch to the check of ``family`` (``encoders``, ``interactors`` or ``rankers``)."""
    try:
        check = _CHECKS[family]
    except KeyError:
        raise ValueError(f"no contract checks for family {family!r}; checked: {', '.join(_CHECKS)}") from None
    check(component, **kwargs)


@dataclass
class CheckResult:
    plugin: str
    family: str
    name: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_checks(manager: Any, plugins: Iterable[str] | None = None,
               params: dict[tuple[str, str], list[dict[str, Any]]] | None = None) -> list[CheckResult]:
    """Check every registered encoder, interactor and ranker (of ``plugins``, default all
    loaded) and return one result per component, failures included (nothing is raised).

    ``params`` adds parameter sets to check per ``(family, name)`` besides the defaults.
    """
    wanted = set(plugins) if plugins is not None else None
    results = []
    for family in CHECKED_FAMILIES:
        for name, (component, owner) in sorted(manager.registry.components[family].items()):
            if wanted is not None and owner not in wanted:
                continue
            result = CheckResult(owner, family, name)
            try:
                for extra in [None, *(params or {}).get((family, name), [])]:
                    check_component(family, component, name=name, plugin=owner, params=extra)
            except AssertionError as exc:
                result.error = str(exc)
            results.append(result)
    return results


def check_plugin(manager: Any, plugin: str) -> list[CheckResult]:
    """Check everything ``plugin`` registered; raise one AssertionError listing every failure."""
    known = [info.name for info in manager.plugins]
    if plugin not in known:
        raise AssertionError(f"plugin {plugin!r} is not loaded; loaded plugins: {', '.join(known)}")
    info = next(info for info in manager.plugins if info.name == plugin)
    if info.error:
        raise AssertionError(f"plugin {plugin!r} failed to load: {info.error}")
    results = run_checks(manager, [plugin])
    failures = [r.error for r in results if r.error]
    if failures:
        raise AssertionError("\n".join(failures))
    return results
