"""Base classes and contracts of the three component families: encoders, interactors, rankers.

A plugin registers a class per component name (``register("dense", DenseEncoder)``). Each
class declares its parameters as a pydantic model in ``Config``; the engine validates the
config file's section against it before anything trains, then builds encoders and
interactors as ``Class(context, config)`` and rankers as ``Class(config)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn


class EngineError(RuntimeError):
    """An expected failure the CLI reports as one line (not a bug)."""


class ComponentUnavailable(EngineError):
    """A component cannot run here (a missing extra, weights that fail verification...)."""


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


class Encoder(nn.Module):
    """Turns a batch of features into representations.

    ``forward(batch)`` takes a dict of tensors: ``ids`` [B] (dense indices, 0 = unknown),
    ``history`` [B, L] item indices (user side; 0 = padding), and feature tensors named
    ``cat:<field>``, ``num:<field>``, ``vec:<name>``. It returns :class:`Encoded`.
    Encoders that need the representation of history items call ``context.embed_items``.
    An encoder fitted in closed form (EASE) defines ``fit(users, items)``, which the engine
    calls once with the training events' dense indices before any epoch.
    """

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    produces_sequence: ClassVar[bool] = False
    roles: ClassVar[tuple[str, ...]] = ("user", "item")  # which tower(s) it can be

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

    def forward(self, batch: dict[str, Tensor]) -> Encoded:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------------------------------
# Interactors
# ---------------------------------------------------------------------------------------


@dataclass
class InteractorContext:
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
        return None


# ---------------------------------------------------------------------------------------
# Rankers
# ---------------------------------------------------------------------------------------


@dataclass
class Candidates:
    """Scored candidates of one request, column-wise: dense item indices, scores, reasons.

    ``take`` shares the inner reason lists: a ranker adds a reason by building a new list
    (``reasons[i] + ["why"]``), never by appending in place.
    """

    items: np.ndarray  # int64 [n]
    scores: np.ndarray  # float32 [n]
    reasons: list[list[str]]

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def take(self, positions: np.ndarray | list[int]) -> "Candidates":
        """A new candidate list holding ``positions`` in that order (a boolean mask works too)."""
        positions = np.asarray(positions)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        reasons = self.reasons
        return Candidates(self.items[positions], self.scores[positions], [reasons[i] for i in positions.tolist()])

    @classmethod
    def empty(cls) -> "Candidates":
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), [])


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
    """One recommendation request as rankers see it."""

    user_id: str
    k: int
    catalog: Catalog
    history: np.ndarray  # dense item indices the user interacted with, oldest first
    history_event_types: list[str] = field(default_factory=list)
    history_ts: list[datetime] = field(default_factory=list)
    known_user: bool = True
    now: datetime | None = None
    exclude: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    filters: dict[str, list[Any]] = field(default_factory=dict)
    user_attributes: dict[str, Any] = field(default_factory=dict)
    item_index: dict[str, int] = field(default_factory=dict)  # external item id → dense index
    # another user's recent (item ids, event types), for graph rankers; None without a snapshot
    history_of: Callable[[str], tuple[list[str], list[str]]] | None = None
    # every item the user ever had an event with (of the given types, None = all), beyond
    # the recent ``history``; None without a snapshot
    seen: Callable[[list[str] | None], np.ndarray] | None = None
    # popularity among users like this one (same attributes), for users without history
    segment_popularity: Callable[[], SegmentPopularity | None] | None = None


class Ranker:
    """Takes scored candidates and returns them filtered, reordered and annotated with reasons.

    Rankers run in the order a domain's config lists them; each gets the previous one's
    output. ``rank`` must not mutate its input.
    """

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig

    def __init__(self, config: ComponentConfig | None = None) -> None:
        self.config = config or self.Config()

    def rank(self, candidates: Candidates, context: RankContext) -> Candidates:  # pragma: no cover
        raise NotImplementedError


def build_config(component: Any, params: dict[str, Any] | None) -> ComponentConfig:
    """Validate ``params`` against a component's ``Config`` (pydantic), naming the component."""
    config_class = getattr(component, "Config", ComponentConfig)
    return config_class(**(params or {}))


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def seed_everything(seed: int) -> None:
    """Seed torch and numpy so training and sampling repeat exactly on CPU."""
    torch.manual_seed(seed)
    np.random.seed(seed)
