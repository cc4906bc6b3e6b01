"""``transformer``: causal self-attention over the user's item history (SASRec-class).

History items are embedded by the item tower (shared representations, as SASRec shares
its item table between input and output), plus learned positions. Each position attends
only to itself and earlier real items, so position t's output predicts item t+1 and the
whole sequence trains at once. ``vector`` is the newest position's output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recengine import hookimpl
from recengine.components import ComponentConfig, Encoded, Encoder, EncoderContext
from recengine.errors import ConfigError


class TransformerConfig(ComponentConfig):
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    ffn_multiplier: int = 2


class Block(nn.Module):
    """Pre-norm transformer block using torch's fused scaled-dot-product attention."""

    def __init__(self, dim: int, heads: int, dropout: float, ffn_multiplier: int) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_multiplier * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_multiplier * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = dropout

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, dim // self.heads).unbind(2)
        attended = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.dropout(self.ffn(self.norm2(x)))


class TransformerEncoder(Encoder):
    """Causal transformer over ``batch["history"]`` [B, L] (right-aligned, 0 = padding)."""

    Config = TransformerConfig
    produces_sequence = True
    padding_invariant = True  # padding keys are masked and positions are numbered from the newest item
    roles = ("user",)

    def __init__(self, context: EncoderContext, config: TransformerConfig) -> None:
        super().__init__(context, config)
        if context.embed_items is None:
            raise ConfigError("the transformer encoder embeds history items: use it as the user encoder")
        self.positions = nn.Embedding(context.max_history, context.dim)
        self.input_norm = nn.LayerNorm(context.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(context.dim, config.heads, config.dropout, config.ffn_multiplier) for _ in range(config.layers)
        )
        self.final_norm = nn.LayerNorm(context.dim)

    def forward(self, batch: dict[str, Tensor]) -> Encoded:
        history = batch["history"][:, -self.context.max_history:]
        mask = history > 0
        length = history.shape[1]
        # numbered from the newest item (max_history - 1) back, so a history shorter than max_history
        # (a batch cut to its longest window) gets the positions it has inside a full-width one
        positions = torch.arange(self.context.max_history - length, self.context.max_history, device=history.device)
        embed_items = self.context.embed_items
        assert embed_items is not None  # __init__ refuses a context without it
        x = embed_items(history) * (self.context.dim ** 0.5)
        x = self.dropout(self.input_norm(x + self.positions(positions)))
        causal = torch.ones(length, length, dtype=torch.bool, device=history.device).tril()
        # a position sees earlier real items and always itself (so padding rows stay finite)
        allowed = (causal & mask.unsqueeze(1)) | torch.eye(length, dtype=torch.bool, device=history.device)
        allowed = allowed.unsqueeze(1)  # [B, 1, L, L], broadcast over heads
        for block in self.blocks:
            x = block(x, allowed)
        sequence = self.final_norm(x) * mask.unsqueeze(-1)
        return Encoded(vector=sequence[:, -1], sequence=sequence, mask=mask)


@hookimpl
def register_encoders(register: Callable[[str, type[Encoder]], None]) -> None:
    register("transformer", TransformerEncoder)
