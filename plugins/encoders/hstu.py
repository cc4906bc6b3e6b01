"""``hstu``: Hierarchical Sequential Transduction Units over the user's item history.

Written from the description in Zhai et al. 2024, "Actions Speak Louder than Words:
Trillion-Parameter Sequential Transducers for Generative Recommendations" (ICML). Each layer
(pre-norm, residual) computes::

    U, V, Q, K = split(SiLU(f1(Norm(X))))
    A = SiLU(Q Kᵀ + rab) / n          causal: position t attends to real items at positions <= t
    X = X + f2(Norm(A V) ⊙ U)

What sets it apart from the ``transformer`` encoder:

- *pointwise aggregated attention*: SiLU instead of softmax, divided by a fixed n
  (``context.max_history``, not the row's sum), so a row's weights need not sum to one and
  how much a user has done stays in the signal, which a softmax normalises away;
- *gating*: the attended values are multiplied by U, which replaces the feed-forward block;
- *relative attention bias* ``rab``: a learned bias per head and relative distance t - s
  (distances from ``relative_distance`` on share the last bias) instead of absolute
  positions, so a history encodes the same whatever its left padding.

- *relative time bias* ``rab^t`` (``time_bias = true``): a learned bias per head and bucket of
  ``log2(1 + |query time - key time|)`` seconds (``time_buckets`` buckets, the last shared by
  all longer gaps), added to the logits beside ``rab``. As in the paper, position t's query time
  is the time of the event it predicts: the next history event's, and for the newest position
  the prediction's (``query_ts``: the target event in training and evaluation, the request's
  time in serving). Only then does the engine gather event times for this encoder
  (:meth:`HSTUEncoder.reads_event_times`; :mod:`recengine.event_times`).

Like the transformer, history items are embedded by the item tower (input and output share
one representation) and position t's output predicts item t+1, so sequence mode trains every
position at once; ``vector`` is the newest position's output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from recengine import hookimpl
from recengine.components import ComponentConfig, Encoded, Encoder, EncoderContext
from recengine.errors import ConfigError
from recengine.event_times import HISTORY_TS, QUERY_TS, TIMES_MISSING


class HSTUConfig(ComponentConfig):
    layers: int = Field(2, ge=1, description="Stacked HSTU layers.")
    heads: int = Field(2, ge=1, description="Attention heads; dim must be divisible by it.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on the input embeddings and each layer's output.")
    relative_distance: int = Field(64, ge=1, description="Relative distances with their own learned bias per head "
                                                         "(0 .. relative_distance - 1); longer ones share the last.")
    time_bias: bool = Field(False, description="Add the paper's relative time bias: a learned bias per head and "
                                               "bucket of log2(1 + seconds between the query's and each history "
                                               "event's time), from the store's event times (training, "
                                               "evaluation) and the snapshot's histories (serving).")
    time_buckets: int = Field(32, ge=2, description="Log2 time-gap buckets of the time bias (gaps of 2^(n-1) - 1 "
                                                    "seconds and more share the last; 32 reaches ~68 years).")


def pointwise_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, allowed: Tensor, n: int) -> Tensor:
    """HSTU's attention: ``SiLU(q kᵀ + bias) / n`` on the ``allowed`` pairs, applied to ``v``.

    ``q``, ``k``, ``v`` are [B, H, L, d_head], ``bias`` broadcasts to [B, H, L, L] and
    ``allowed`` is a bool [B, 1, L, L] (query row, key column). No softmax: a row's
    weights are independent of each other and do not sum to one.
    """
    weights = F.silu(q @ k.transpose(-1, -2) + bias) * allowed / n
    return weights @ v


def relative_distances(length: int, device: torch.device) -> Tensor:
    """[L, L] distance ``query - key`` (>= 0 where a query may attend, negative above the diagonal)."""
    positions = torch.arange(length, device=device)
    return positions[:, None] - positions[None, :]


def time_gap_buckets(query_times: Tensor, key_times: Tensor, buckets: int) -> Tensor:
    """Bucket index ``min(floor(log2(1 + |gap in seconds|)), buckets - 1)`` of every (query, key)
    pair: [B, L] and [B, L] epoch seconds → [B, L, L] int64. Gaps of a second, a minute, an
    hour and a day land in buckets 1, 5, 11 and 16."""
    gaps = (query_times[:, :, None] - key_times[:, None, :]).abs().double()
    return torch.log2(1 + gaps).floor().clamp(max=buckets - 1).long()


class RelativePositionBias(nn.Module):
    """``rab^p``: one learned bias per head and relative distance, shared past ``distance``."""

    def __init__(self, heads: int, distance: int) -> None:
        super().__init__()
        self.distance = distance
        self.bias = nn.Embedding(distance, heads)
        nn.init.zeros_(self.bias.weight)  # start as plain pointwise attention

    def forward(self, distances: Tensor) -> Tensor:
        """[L, L] distances → [H, L, L] biases (negative distances are masked by the caller)."""
        return self.bias(distances.clamp(0, self.distance - 1)).permute(2, 0, 1)


class RelativeTimeBias(nn.Module):
    """``rab^t``: one learned bias per head and log2 time-gap bucket (:func:`time_gap_buckets`)."""

    def __init__(self, heads: int, buckets: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.bias = nn.Embedding(buckets, heads)
        nn.init.zeros_(self.bias.weight)  # start without a time preference

    def forward(self, buckets: Tensor) -> Tensor:
        """[B, L, L] bucket indices → [B, H, L, L] biases."""
        return self.bias(buckets).permute(0, 3, 1, 2)


def query_times(history_ts: Tensor, query_ts: Tensor) -> Tensor:
    """[B, L] time of the event each position predicts: the next position's time, and
    ``query_ts`` [B] (the prediction's time) for the newest one."""
    return torch.cat([history_ts[:, 1:], query_ts.to(history_ts.dtype).unsqueeze(1)], dim=1)


class HSTULayer(nn.Module):
    """One HSTU layer: gated pointwise attention with a relative position (and optionally time)
    bias, pre-norm, residual."""

    def __init__(self, dim: int, heads: int, dropout: float, relative_distance: int, n: int,
                 time_buckets: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.n = n
        self.input_norm = nn.LayerNorm(dim)
        self.f1 = nn.Linear(dim, 4 * dim)  # U, V, Q, K
        self.attended_norm = nn.LayerNorm(dim)
        self.f2 = nn.Linear(dim, dim)
        self.position_bias = RelativePositionBias(heads, relative_distance)
        self.time_bias = RelativeTimeBias(heads, time_buckets) if time_buckets else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor, distances: Tensor, time_buckets: Tensor | None = None) -> Tensor:
        """``time_buckets`` [B, L, L]: the gap buckets, given exactly when the layer has a time bias."""
        batch, length, dim = x.shape
        u, v, q, k = F.silu(self.f1(self.input_norm(x))).chunk(4, dim=-1)

        def heads(t: Tensor) -> Tensor:  # [B, L, dim] → [B, H, L, dim / H]
            return t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

        bias = self.position_bias(distances)
        if self.time_bias is not None:
            assert time_buckets is not None  # the encoder computes them whenever its layers have a time bias
            bias = bias + self.time_bias(time_buckets)
        attended = pointwise_attention(heads(q), heads(k), heads(v), bias, allowed, self.n)
        attended = attended.transpose(1, 2).reshape(batch, length, dim)
        return x + self.dropout(self.f2(self.attended_norm(attended) * u))


class HSTUEncoder(Encoder):
    """Causal HSTU over ``batch["history"]`` [B, L] (right-aligned, 0 = padding)."""

    Config = HSTUConfig
    produces_sequence = True
    padding_invariant = True  # relative positions only, and n is max_history, not the row's width
    roles = ("user",)

    def __init__(self, context: EncoderContext, config: HSTUConfig) -> None:
        super().__init__(context, config)
        if context.embed_items is None:
            raise ConfigError("the hstu encoder embeds history items: use it as the user encoder")
        self.input_dropout = nn.Dropout(config.dropout)
        self.time_buckets = config.time_buckets if config.time_bias else None
        self.layers = nn.ModuleList(
            HSTULayer(context.dim, config.heads, config.dropout, config.relative_distance, context.max_history,
                      self.time_buckets)
            for _ in range(config.layers)
        )
        self.final_norm = nn.LayerNorm(context.dim)

    @classmethod
    def reads_event_times(cls, params: dict[str, Any]) -> bool:
        """True with ``time_bias = true``: the engine then passes ``history_ts`` and ``query_ts``."""
        return HSTUConfig.model_validate(params).time_bias

    def _time_buckets(self, batch: dict[str, Tensor]) -> Tensor | None:
        """[B, L, L] gap buckets between each position's query time and every history time."""
        if self.time_buckets is None:
            return None
        if HISTORY_TS not in batch or QUERY_TS not in batch:
            raise ConfigError(f"hstu: {TIMES_MISSING}")
        history_ts = batch[HISTORY_TS][:, -self.context.max_history:]
        return time_gap_buckets(query_times(history_ts, batch[QUERY_TS]), history_ts, self.time_buckets)

    def forward(self, batch: dict[str, Tensor]) -> Encoded:
        history = batch["history"][:, -self.context.max_history:]
        time_buckets = self._time_buckets(batch)
        mask = history > 0
        length = history.shape[1]
        embed_items = self.context.embed_items
        assert embed_items is not None  # __init__ refuses a context without it
        x = self.input_dropout(embed_items(history) * math.sqrt(self.context.dim)) * mask.unsqueeze(-1)
        distances = relative_distances(length, history.device)
        # a query attends to real items at or before it; padding rows attend to nothing (output 0 + bias)
        allowed = ((distances >= 0) & mask.unsqueeze(1)).unsqueeze(1)  # [B, 1, L, L], broadcast over heads
        for layer in self.layers:
            x = layer(x, allowed, distances, time_buckets)
        sequence = self.final_norm(x) * mask.unsqueeze(-1)
        return Encoded(vector=sequence[:, -1], sequence=sequence, mask=mask)


@hookimpl
def register_encoders(register: Callable[[str, type[Encoder]], None]) -> None:
    register("hstu", HSTUEncoder)
