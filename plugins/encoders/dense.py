"""``dense``: the design's dense-layer tower — an MLP over id embeddings and features.

Inputs it can use, each switchable: the entity's id embedding; categorical fields
(list fields such as genres are mean-pooled); numeric fields; item vector sets (through a
learned projection, so pretrained text vectors sit beside the id embedding); and, for
users, the mean of their history items' representations and, with ``model.searches``, the
pooled vector of their recent searches (one more vector input, ``vec:searches``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from recengine import hookimpl
from recengine.components import ComponentConfig, Encoded, Encoder, EncoderContext
from recengine.errors import ConfigError


class DenseConfig(ComponentConfig):
    hidden: list[int] = []  # hidden layer sizes; [] is a single linear layer over the inputs
    use_ids: bool = True
    use_features: bool = True
    use_history: bool = False  # users only: add the mean of history item representations
    field_dim: int = 16  # embedding size of each categorical field
    dropout: float = 0.0


class DenseEncoder(Encoder):
    """MLP tower: concatenated inputs → hidden layers (ReLU) → ``dim``."""

    Config = DenseConfig

    def __init__(self, context: EncoderContext, config: DenseConfig) -> None:
        super().__init__(context, config)
        spec = context.features
        width = 0
        self.ids = None
        if config.use_ids:
            self.ids = nn.Embedding(spec.num_ids + 1, context.dim, padding_idx=0)
            nn.init.normal_(self.ids.weight, std=0.05)
            with torch.no_grad():  # init overwrote the padding row: id 0 (unknown, cold) embeds as zeros
                self.ids.weight[0].zero_()
            width += context.dim
        self.fields = nn.ModuleDict()
        self.numeric: list[str] = []
        self.projections = nn.ModuleDict()
        if config.use_features:
            for name, size in spec.categorical.items():
                self.fields[name] = nn.Embedding(size, config.field_dim, padding_idx=0)
                width += config.field_dim
            self.numeric = list(spec.numeric)
            width += len(self.numeric)
            for name, size in spec.vectors.items():
                self.projections[name] = nn.Linear(size, context.dim)
                width += context.dim
        self.use_history = config.use_history and context.role == "user" and context.embed_items is not None
        if self.use_history:
            width += context.dim
        if width == 0:
            raise ConfigError("dense encoder has no inputs: enable use_ids, use_features or use_history")
        layers: list[nn.Module] = []
        for size in config.hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(config.dropout)]
            width = size
        ids_only = self.ids is not None and width == context.dim and not config.hidden
        # Ids alone with no hidden layer is matrix factorisation: the embedding *is* the output.
        # A linear layer on top adds nothing it could express and measurably slows and hurts
        # optimisation (ml-100k P-gen softmax MF: valid NDCG@10 0.229 with it vs 0.249 without).
        self.mlp = nn.Identity() if ids_only else nn.Sequential(*layers, nn.Linear(width, context.dim))

    @classmethod
    def reads_vector_inputs(cls, params: dict[str, Any]) -> bool:
        """With ``use_features`` (the default) every vector input gets its own projection."""
        return bool(params.get("use_features", True))

    @property
    def uses_history(self) -> bool:
        return self.use_history

    def forward(self, batch: dict[str, Tensor]) -> Encoded:
        parts = []
        if self.ids is not None:
            parts.append(self.ids(batch["ids"]))
        for name, embedding in self.fields.items():
            codes = batch[f"cat:{name}"]
            if codes.dim() == batch["ids"].dim() + 1:  # a list field: mean over present values
                present = (codes > 0).unsqueeze(-1)
                pooled = (embedding(codes) * present).sum(-2) / present.sum(-2).clamp(min=1)
                parts.append(pooled)
            else:
                parts.append(embedding(codes))
        if self.numeric:
            parts.append(torch.stack([batch[f"num:{name}"] for name in self.numeric], dim=-1))
        for name, projection in self.projections.items():
            parts.append(projection(batch[f"vec:{name}"]))
        sequence = mask = None
        if self.use_history:
            history = batch["history"]
            mask = history > 0
            embed_items = self.context.embed_items
            assert embed_items is not None  # use_history is only set when the context has it
            sequence = embed_items(history)
            weights = mask.unsqueeze(-1).to(sequence.dtype)
            parts.append((sequence * weights).sum(1) / weights.sum(1).clamp(min=1))
        return Encoded(self.mlp(torch.cat(parts, dim=-1)), sequence, mask)


@hookimpl
def register_encoders(register: Callable[[str, type[Encoder]], None]) -> None:
    register("dense", DenseEncoder)
