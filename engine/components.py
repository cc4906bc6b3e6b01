"""Base classes and contracts of the three component families: encoders, interactors, rankers.

A plugin registers a class per component name (``register("dense", DenseEncoder)``). Each
class declares its parameters as a pydantic model in ``Config``; the engine validates the
config file's section against it before anything trains, then builds encoders and
interactors as ``Class(context, config)`` and rankers as ``Class(config)``
(``PluginManager.build``). Everything the engine asks of a component is a declared member of
its base class here, with a default: the engine never probes for optional methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from recengine.errors import ComponentUnavailable, EngineError, RequestError

__all__ = [
    "BASE_CLASSES", "Candidates", "Catalog", "ComponentConfig", "ComponentUnavailable", "Encoded", "Encoder",
    "EncoderContext", "EngineError", "FeatureSpec", "Interactor", "InteractorContext", "LIST_VALUE_TYPES",
    "RankContext", "Ranker", "RequestError", "SegmentPopularity", "l2_normalise", "seed_everything", "value_codes",
]


class ComponentConfig(BaseModel):
    """Base of every component's parameters: unknown keys are an error, not a silent typo."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """An encoder's output: ``vector`` [B, d]; sequence encoders add ``sequence`` [B, L, d]
    and ``mask`` [B, L] (True where a real item is, False on padding)."""

    vector: Tensor
    sequence: Tensor | None = None
    mask: Tensor | None = None


@dataclass
class FeatureSpec:
    """What an entity table offers an encoder: ids, categorical fields, numbers, vectors.

    ``categorical`` maps a field to its vocabulary size (index 0 is "missing"); a list field
    (genres) is a padded [B, K] index tensor. ``vectors`` maps a vector set to its dimension.
    """

    num_ids: int
    categorical: dict[str, int] = field(default_factory=dict)
    numeric: list[str] = field(default_factory=list)
    vectors: dict[str, int] = field(default_factory=dict)


@dataclass
class EncoderContext:
    """What the engine tells an encoder factory about where the encoder sits."""

    role: str  # "user" or "item"
    dim: int  # output dimension shared by both towers
    features: FeatureSpec  # the features of this encoder's entity
    num_items: int  # catalogue size (item indices are 1..num_items; 0 is padding)
    max_history: int  # longest user history a batch carries
    # item index tensor of any shape [...] -> item representations [..., dim]; set for
    # user encoders so history items share the item tower's representation
    embed_items: Callable[[Tensor], Tensor] | None = None
    # the entity's vector sets by name, [num_ids + 1, d] float32 (row = entity index, row 0 and
    # entities without a vector all zeros), for encoders that initialise weights from them (the
    # ``text`` encoder's text-initialised ids); read-only, and empty when a bundle is reloaded (its saved
    # weights replace any initialisation, so none is computed)
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)


class Encoder(nn.Module):
    """Turns a batch of features into representations.

    ``forward(batch)`` takes a dict of tensors: ``ids`` [B] (dense indices, 0 = unknown),
    ``history`` [B, L] item indices (user side; 0 = padding), and feature tensors named
    ``cat:<field>``, ``num:<field>``, ``vec:<name>``; ``history_ts`` and ``query_ts`` only
    for encoders whose :meth:`reads_event_times` says so. It returns :class:`Encoded`.
    Encoders that need the representation of history items call ``context.embed_items``.
    """

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    # True for sequence encoders (``Encoded.sequence``/``mask``): enables sequence training
    # and the attention interactor
    produces_sequence: ClassVar[bool] = False
    # True when a history's outputs at its real positions do not depend on how much left padding
    # it has (positions numbered from the newest item, or relative ones): sequence training then
    # drops a batch's all-padding columns, so short histories cost what they hold, not max_history
    padding_invariant: ClassVar[bool] = False
    roles: ClassVar[tuple[str, ...]] = ("user", "item")  # which tower(s) it can be
    # True when the class implements ``embed_texts`` (a pretrained text model):
    # ``recengine vectors build --encoder NAME`` accepts only such encoders
    embeds_text: ClassVar[bool] = False
    # for such encoders: which pretrained model embeds (name and weights hash), recorded with each
    # vector set they build so that a set is never extended with another model's vectors
    text_model: ClassVar[str | None] = None

    def __init__(self, context: EncoderContext, config: ComponentConfig | None = None) -> None:
        super().__init__()
        self.context = context
        self.config = config if config is not None else self.Config()
        self.dim = context.dim

    @property
    def output_dim(self) -> int:
        """Width of ``vector``: ``context.dim`` unless the encoder fixes its own (EASE: N+1)."""
        return self.dim

    @property
    def uses_history(self) -> bool:
        """Whether ``forward`` reads ``history``; when False the engine skips gathering it
        (a [B, L] gather per training batch), so history-free towers train faster."""
        return True

    @classmethod
    def required_vectors(cls, params: dict[str, Any]) -> list[str]:
        """Item vector sets this encoder reads with these ``params``: the engine loads them
        from the store with the items. Default: none (vectors named in
        ``model.item_vectors`` are loaded anyway)."""
        return []

    @classmethod
    def reads_event_times(cls, params: dict[str, Any]) -> bool:
        """Whether this encoder, with these ``params``, reads event timestamps: its batches then
        also hold ``history_ts`` [B, L] and ``query_ts`` [B] (int64 epoch seconds; see
        :mod:`recengine.event_times`) in training, evaluation and serving. Default False:
        nobody gathers times for it."""
        return False

    @classmethod
    def reads_vector_inputs(cls, params: dict[str, Any]) -> bool:
        """Whether ``forward``, with these ``params``, reads every vector input its
        ``FeatureSpec.vectors`` declares (``vec:<name>`` [B, d]); the engine hands a user tower
        the user's pooled recent searches that way (``model.searches``) only if it does.
        Default False."""
        return False

    @classmethod
    def embed_texts(cls, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised [len(texts), d] float32 text embeddings, for encoders that declare
        ``embeds_text = True``; the default refuses with ``ComponentUnavailable``."""
        raise ComponentUnavailable(f"encoder {cls.__name__} does not embed text (embeds_text is False)")

    def fit(self, users: np.ndarray, items: np.ndarray) -> None:
        """Fit in closed form (EASE) from the training events' dense user and item indices,
        called once before any epoch; the default does nothing (gradient-trained encoders).
        A model without trainable parameters after ``fit`` runs no epochs."""

    def forward(self, batch: dict[str, Tensor]) -> Encoded:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------------------------------
# Interactors
# ---------------------------------------------------------------------------------------


@dataclass
class InteractorContext:
    """What the engine tells an interactor: ``dim``, the width of both towers' vectors."""

    dim: int


class Interactor(nn.Module):
    """Scores user representations against item representations.

    - ``score(user, items)``: ``items`` [B, d] → [B], or [B, K, d] → [B, K] (candidates);
    - ``score_all(user, item_matrix)``: [N, d] → [B, N], for full ranking and retrieval.
    ``explain(user, items)`` returns per-history-item weights [B, K, L] when the interactor
    has them (attention), else None. ``needs_sequence``: scoring requires ``user.sequence``;
    ``uses_sequence = False``: scoring never reads it (declare it to let serving cache user
    vectors; the default assumes it might).
    """

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    needs_sequence: ClassVar[bool] = False
    # False when scores read ``user.vector`` alone (never ``sequence``): serving may then
    # encode every user once per snapshot and score from those cached vectors
    uses_sequence: ClassVar[bool] = True

    def __init__(self, context: InteractorContext, config: ComponentConfig | None = None) -> None:
        super().__init__()
        self.context = context
        self.config = config if config is not None else self.Config()

    def score(self, user: Encoded, items: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def score_all(self, user: Encoded, item_matrix: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def explain(self, user: Encoded, items: Tensor) -> Tensor | None:
        """Per-history-item weights [B, K, L] behind each score (attention), or None."""
        return None

    def fit(self, users: np.ndarray, items: np.ndarray) -> None:
        """Closed-form fitting from the training events' dense indices, once before any
        epoch, as for encoders; the default does nothing."""


# ---------------------------------------------------------------------------------------
# Rankers
# ---------------------------------------------------------------------------------------


@dataclass
class Candidates:
    """Scored candidates of one request, column-wise: dense item indices, scores, reasons.

    Read-only: ``items`` and ``scores`` are non-writeable arrays and ``reasons`` a tuple, so a
    ranker may return its input unchanged, and one built from another shares its reason
    lists. A ranker adds a reason by building a new list (``reasons[i] + ["why"]``), never by
    appending in place (``recengine.testing`` checks it).
    """

    items: np.ndarray  # int64 [n]
    scores: np.ndarray  # float32 [n]
    reasons: Sequence[list[str]]

    def __post_init__(self) -> None:
        self.items = _read_only(self.items, np.int64)
        self.scores = _read_only(self.scores, np.float32)
        self.reasons = tuple(self.reasons)
        if not (self.items.ndim == 1 and self.items.shape == self.scores.shape
                and len(self.reasons) == self.items.shape[0]):
            raise ValueError(f"Candidates columns must be 1-d and aligned: items {self.items.shape}, "
                             f"scores {self.scores.shape}, {len(self.reasons)} reason lists")

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def take(self, positions: np.ndarray | list[int]) -> Candidates:
        """A new candidate list holding ``positions`` in that order (a boolean mask works too)."""
        positions = np.asarray(positions)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        reasons = self.reasons
        return Candidates(self.items[positions], self.scores[positions], [reasons[i] for i in positions.tolist()])

    def head(self, n: int) -> Candidates:
        """The first ``n`` candidates (all of them when there are fewer)."""
        return self if n >= len(self) else Candidates(self.items[:n], self.scores[:n], self.reasons[:n])

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), [])


def _read_only(values: np.ndarray, dtype: type) -> np.ndarray:
    """A non-writeable view of ``values`` as ``dtype`` (the caller's own array stays writeable)."""
    view: np.ndarray = np.asarray(values, dtype=dtype).view()
    view.flags.writeable = False
    return view


@dataclass
class Catalog:
    """Items as rankers see them, indexed by dense item index (row 0 is the padding item).

    ``columns`` holds numpy arrays of item attributes (categories as strings or codes,
    ``created_at`` as datetime64); ``vectors`` is an L2-normalised [N+1, d] matrix for
    similarity (the model's item representations unless a vector set is named);
    ``popularity`` is training-event counts per item.
    """

    item_ids: np.ndarray  # object [N+1], item_ids[0] = ""
    columns: dict[str, np.ndarray]
    vectors: np.ndarray
    popularity: np.ndarray
    titles: np.ndarray | None = None
    _codes: dict[str, np.ndarray | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def size(self) -> int:
        return int(self.item_ids.shape[0]) - 1

    def codes(self, name: str) -> np.ndarray | None:
        """Integer codes [N+1] of a single-valued column (one per distinct value, -1 for a
        missing one), computed once per catalogue; None for a list-valued column (genres).
        Rankers that group items per request compare these instead of Python objects."""
        if name not in self._codes:
            self._codes[name] = value_codes(self.columns[name])
        return self._codes[name]

    def title(self, index: int) -> str:
        if self.titles is not None and self.titles[index]:
            return str(self.titles[index])
        return str(self.item_ids[index])


LIST_VALUE_TYPES = (list, set, np.ndarray)  # a cell holding several values (genres); a tuple is one value


def value_codes(values: np.ndarray) -> np.ndarray | None:
    """A code per cell (equal values, equal codes; None/NaN/NaT → -1), or None when some
    cell holds several values (a list, set or array)."""
    missing: np.ndarray
    if values.dtype.kind == "M":
        missing = np.isnat(values)
    elif values.dtype.kind == "f":
        missing = np.isnan(values)
    elif values.dtype != object:
        missing = np.zeros(values.shape[0], dtype=bool)
    else:
        index: dict[Any, int] = {}
        codes = np.empty(values.shape[0], dtype=np.int64)
        for row, value in enumerate(values.tolist()):
            if isinstance(value, LIST_VALUE_TYPES):
                return None
            codes[row] = -1 if value is None or value != value else index.setdefault(value, len(index))
        return codes
    _, codes = np.unique(values, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    codes[missing] = -1
    return codes


@dataclass(frozen=True)
class SegmentPopularity:
    """Item popularity among users who share a new user's attributes (cold-start users)."""

    counts: np.ndarray  # [N+1] events per item within the segment
    order: np.ndarray  # item indices by count, descending (ties: lower index first)
    description: str  # e.g. "gender: M, occupation: student"


@dataclass
class RankContext:
    """One recommendation request as rankers see it (docs/plugins.md documents every field)."""

    user_id: str
    k: int  # how many items the request asked for
    catalog: Catalog
    history: np.ndarray  # dense item indices the user interacted with, oldest first
    history_event_types: list[str] = field(default_factory=list)  # aligned with ``history``
    history_ts: list[datetime] = field(default_factory=list)  # aligned with ``history``
    known_user: bool = True  # False: the model knows nothing of the user (fallback rankers answer)
    now: datetime | None = None  # the request's time (freshness), None when not given
    exclude: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # items never to return
    filters: dict[str, list[Any]] = field(default_factory=dict)  # column → allowed values
    user_attributes: dict[str, Any] = field(default_factory=dict)  # the user's current attributes
    item_index: dict[str, int] = field(default_factory=dict)  # external item id → dense index
    # another user's recent (item ids, event types), for graph rankers; None without a snapshot
    history_of: Callable[[str], tuple[list[str], list[str]]] | None = None
    # every item the user ever had an event with (of the given types, None = all), beyond
    # the recent ``history``; None without a snapshot
    seen: Callable[[list[str] | None], np.ndarray] | None = None
    # popularity among users like this one (same attributes), for users without history
    segment_popularity: Callable[[], SegmentPopularity | None] | None = None
    # the searches the user tower read for this request (model.searches), newest first: a user
    # with searches and no history is no cold user to such a model
    recent_searches: list[str] = field(default_factory=list)


class Ranker:
    """Takes scored candidates and returns them filtered, reordered and annotated with reasons.

    Rankers run in the order a domain's config lists them; each gets the previous one's
    output. ``rank`` must not mutate its input (returning it unchanged is fine).
    """

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig

    def __init__(self, config: ComponentConfig | None = None) -> None:
        self.config = config or self.Config()

    @property
    def reads_request_time(self) -> bool:
        """Whether ``rank`` uses ``context.now`` (the request's time) with this config. When no
        ranker of a chain does, a response says the time it was given had no effect. Default False."""
        return False

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:  # pragma: no cover
        raise NotImplementedError


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def seed_everything(seed: int) -> None:
    """Seed torch and numpy so training and sampling repeat exactly on CPU."""
    torch.manual_seed(seed)
    np.random.seed(seed)


BASE_CLASSES: dict[str, type] = {"encoders": Encoder, "interactors": Interactor, "rankers": Ranker}
"""The base class a registered component of each family must subclass."""
