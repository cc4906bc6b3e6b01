"""``attention``: the design's formula 4.2, Attention(Q, K, V) = softmax(QKᵀ/√d_k)·V.

The candidate item is the query; the user's history sequence (from a sequence encoder,
or the dense encoder's history items) gives keys and values (DIN-style target attention).
The attended interest is scored against the candidate, together with the user's pooled
vector. The attention weights say which history items drove a score: they are the
recommendation's explanation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from recengine import hookimpl
from recengine.components import ComponentConfig, Encoded, Interactor, InteractorContext


class AttentionConfig(ComponentConfig):
    project: bool = True  # learned query/key projections (W_Q, W_K); False uses raw vectors
    include_pooled: bool = True  # add the user's pooled vector to the attended interest
    chunk: int = 4096  # items per block in score_all, bounding memory at [B, chunk, L]


class AttentionInteractor(Interactor):
    """Target attention of each candidate over the user's history."""

    Config = AttentionConfig
    config: AttentionConfig
    needs_sequence = True

    def __init__(self, context: InteractorContext, config: AttentionConfig) -> None:
        super().__init__(context, config)
        self.query = nn.Linear(context.dim, context.dim, bias=False) if config.project else nn.Identity()
        self.key = nn.Linear(context.dim, context.dim, bias=False) if config.project else nn.Identity()

    def _weights(self, user: Encoded, items: Tensor) -> Tensor:
        """softmax(QKᵀ/√d) over real history items: [B, K, L] for items [B, K, d]."""
        sequence, mask = _history(user)
        logits = self.query(items) @ self.key(sequence).transpose(1, 2) / math.sqrt(items.shape[-1])
        logits = logits.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        return torch.nan_to_num(weights)  # a user without history attends to nothing

    def _score(self, user: Encoded, items: Tensor) -> Tensor:
        weights = self._weights(user, items)
        interest = weights @ _history(user)[0]  # [B, K, d]
        if self.config.include_pooled:
            interest = interest + user.vector.unsqueeze(1)
        return (interest * items).sum(-1)

    def score(self, user: Encoded, items: Tensor) -> Tensor:
        if items.dim() == 2:
            return self._score(user, items.unsqueeze(1)).squeeze(1)
        return self._score(user, items)

    def score_all(self, user: Encoded, item_matrix: Tensor) -> Tensor:
        """The same scores as ``score`` on every item, computed for items shared by the batch:
        each item is projected once (not once per user), and ``interest · item`` is summed as
        Σ_l weight_l (history_l · item), so no [B, items, d] tensor is built, only [B, chunk, L]."""
        sequence, mask = _history(user)
        keys = self.key(sequence)  # [B, L, d]
        blocks = []
        for block in item_matrix.split(self.config.chunk):
            logits = torch.einsum("kd,bld->bkl", self.query(block), keys) / math.sqrt(block.shape[-1])
            logits = logits.masked_fill(~mask.unsqueeze(1), float("-inf"))
            weights = torch.nan_to_num(torch.softmax(logits, dim=-1))  # a user without history attends to nothing
            scores = (weights * torch.einsum("bld,kd->bkl", sequence, block)).sum(-1)
            if self.config.include_pooled:
                scores = scores + user.vector @ block.T
            blocks.append(scores)
        return torch.cat(blocks, dim=1) if blocks else user.vector.new_zeros(user.vector.shape[0], 0)

    def explain(self, user: Encoded, items: Tensor) -> Tensor:
        return self._weights(user, items if items.dim() == 3 else items.unsqueeze(1))


def _history(user: Encoded) -> tuple[Tensor, Tensor]:
    """The user's history sequence [B, L, d] and its real-item mask [B, L], or a clear error."""
    if user.sequence is None or user.mask is None:
        raise ValueError("the attention interactor needs a sequence: use the transformer encoder, "
                         "or the dense encoder with use_history=true")
    return user.sequence, user.mask


@hookimpl
def register_interactors(register: Callable[[str, type[Interactor]], None]) -> None:
    register("attention", AttentionInteractor)
