"""``gru``: a GRU over the user's item history (GRU4Rec-style), as the user encoder.

History items are embedded by the item tower (``context.embed_items``), so a history item
and a candidate share one representation. The history arrives left-padded (index 0 =
padding, and a 0 may also sit between real items for an item newer than the model); the
encoder moves the real items to the front, keeping their order, runs the GRU, and puts the
outputs back in place, so padding never enters the recurrence. Being recurrent, position t
only sees items up to t: the engine can train it in ``sequence`` mode (predict every next
item at once).

Output: ``sequence`` [B, L, d] (zero on padding), ``mask`` [B, L] (``history > 0``) and
``vector`` [B, d] = the output at the newest real item, which for the engine's
right-aligned histories is the last position; a user without history gets zeros.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from recengine.components import ComponentConfig, Encoded, Encoder, EncoderContext


class GRUConfig(ComponentConfig):
    """Parameters of ``gru`` (the ``model.user_encoder.params`` section)."""

    layers: int = Field(1, ge=1, le=8, description="Stacked GRU layers.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the item embeddings and between layers.")


class GRUEncoder(Encoder):
    """GRU over ``batch["history"]`` [B, L]; the hidden size is the model's ``dim``."""

    Config = GRUConfig
    produces_sequence = True
    roles = ("user",)

    def __init__(self, context: EncoderContext, config: GRUConfig) -> None:
        super().__init__(context, config)
        if context.role != "user" or context.embed_items is None:
            raise ValueError("the gru encoder reads the user's item history: use it as the user encoder")
        self.input_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(context.dim, context.dim, num_layers=config.layers, batch_first=True,
                          dropout=config.dropout if config.layers > 1 else 0.0)
        self.norm = nn.LayerNorm(context.dim)

    def forward(self, batch: dict[str, Tensor]) -> Encoded:
        history = batch["history"][:, -self.context.max_history:]
        mask = history > 0
        size, length = history.shape
        dim = self.context.dim
        if size == 0 or length == 0:
            empty = torch.zeros(size, length, dim, device=history.device)
            return Encoded(vector=torch.zeros(size, dim, device=history.device), sequence=empty, mask=mask)
        # real items first, in their order; padding after them cannot affect their outputs
        order = torch.sort(mask.to(torch.int8), dim=1, descending=True, stable=True).indices  # [B, L]
        gather = order.unsqueeze(-1).expand(-1, -1, dim)
        embedded = self.input_dropout(self.context.embed_items(history))  # [B, L, d]
        outputs, _ = self.gru(embedded.gather(1, gather))
        sequence = torch.zeros_like(outputs).scatter(1, gather, outputs)  # back to the original positions
        sequence = self.norm(sequence) * mask.unsqueeze(-1)
        lengths = mask.sum(1)
        newest = order.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # position of the newest item
        vector = sequence[torch.arange(size, device=history.device), newest]
        return Encoded(vector=vector, sequence=sequence, mask=mask)
