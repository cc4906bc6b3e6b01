"""Softmax losses of the training loop: the full softmax (optionally over item chunks) and the
sampled softmax (per-row or shared negatives, in-batch negatives, logQ correction).

Every variant returns each training position's cross-entropy of its target against its
candidates. Logits are ``score / temperature`` (the temperature is 1 unless the vectors are
L2-normalised, see ``TrainConfig.normalize``), then the logQ correction.

- full softmax: every item is a candidate (index 0, the padding item, never is);
  ``chunk`` computes it over item chunks with a streaming logsumexp and recomputes each
  chunk's scores in the backward pass, so memory is bounded by positions × chunk, not by
  positions × catalogue; value and gradients are those of the unchunked loss.
- sampled softmax: candidates are the target, the sampled negatives (``per_row``: [P, S],
  drawn and embedded for every position; ``shared``: [S], embedded once and scored against
  every position with one ``score_all``) and, with ``in_batch``, the step's distinct
  targets. A negative equal to the position's own target (an accidental hit) is masked.
- seen items (``SeenItems``, ``TrainConfig.exclude_seen``): the items a position's user already
  interacted with before it are no candidates of its softmax (its own target always is), as
  a ranker that hides seen items leaves them out at serving.
- logQ correction (Yi et al. 2019; TF's ``sampled_softmax_loss``): each candidate's logit,
  the target's included, minus log Q(i), Q(i) the expected count of item i among the step's
  candidates: S·q(i) for S negatives drawn with replacement from q, plus 1-(1-p(i))^P for
  the distinct targets of P positions (p the training target frequency). Without it a
  popularity sampler (or in-batch negatives, which are popularity-distributed) would learn
  to demote popular items.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from recengine.components import Encoded, Interactor

#: Temperature of a learnt one's start, and the floor it is kept above (CLIP-style clamp).
LEARNT_TEMPERATURE_START = 0.1
LEARNT_TEMPERATURE_FLOOR = 0.01
#: Temperature of cosine logits when ``normalize`` is on and none is configured.
DEFAULT_COSINE_TEMPERATURE = 0.1


class Temperature(nn.Module):
    """The divisor of the logits: 1 (raw dot products), a configured number, or a learnt scalar."""

    def __init__(self, setting: float | str | None, normalize: bool) -> None:
        super().__init__()
        self.log_value: nn.Parameter | None = None
        self.fixed = 1.0
        if setting == "learn":
            self.log_value = nn.Parameter(torch.tensor(math.log(LEARNT_TEMPERATURE_START)))
        elif normalize:
            self.fixed = float(setting) if setting is not None else DEFAULT_COSINE_TEMPERATURE

    def forward(self) -> Tensor | float:
        if self.log_value is None:
            return self.fixed
        return self.log_value.exp().clamp(min=LEARNT_TEMPERATURE_FLOOR)

    def value(self) -> float:
        current = self()
        return float(current.detach()) if isinstance(current, Tensor) else current

    def restore(self, value: float | None) -> None:
        """Set a learnt temperature to ``value`` (a resumed run's, from its checkpoint state)."""
        if self.log_value is not None and value is not None:
            with torch.no_grad():
                self.log_value.fill_(math.log(value))


class NegativeSampler:
    """Draws negatives from items 1..N, uniformly or by popularity^power, and knows their log q."""

    def __init__(self, num_items: int, popularity: np.ndarray | None = None, power: float = 0.75,
                 device: torch.device | str = "cpu") -> None:
        if popularity is None:
            weights = np.ones(num_items + 1, dtype=np.float64)
        else:
            weights = np.asarray(popularity, dtype=np.float64) ** power
        weights[0] = 0.0  # the padding item is never drawn
        if not weights.sum() > 0:
            raise ValueError("no item has a positive sampling weight")
        probabilities = weights / weights.sum()
        self.uniform = popularity is None
        self.num_items = num_items
        self.probabilities = torch.as_tensor(probabilities, dtype=torch.float32, device=device)
        self.cumulative = torch.as_tensor(np.cumsum(probabilities), dtype=torch.float64, device=device)

    def draw(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        device = self.cumulative.device
        if self.uniform:  # the exact draw per-row sampling always made (same generator stream)
            return torch.randint(1, self.num_items + 1, shape, generator=generator, device=device)
        u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
        index = torch.searchsorted(self.cumulative, u * self.cumulative[-1], right=True)
        return index.clamp(1, self.num_items)


@dataclass
class CandidateCounts:
    """Expected counts Q(i) of items among a step's candidates, for the logQ correction."""

    sampler: NegativeSampler | None  # sampled negatives (S per position or per step)
    negatives: int
    frequency: Tensor | None  # [N+1] training target frequency p(i), when in-batch negatives are on
    positions: int

    def log_expected(self, items: Tensor) -> Tensor:
        expected = torch.zeros(items.shape, dtype=torch.float32, device=items.device)
        if self.sampler is not None and self.negatives:
            expected = expected + self.negatives * self.sampler.probabilities[items]
        if self.frequency is not None:
            p = self.frequency[items]
            expected = expected + -torch.expm1(self.positions * torch.log1p(-p.clamp(max=1 - 1e-7)))
        return torch.log(expected.clamp(min=1e-30))


#: Above this many [rows x catalogue] entries, sampled candidates (shared or per row) are matched
#: against the windows directly ([rows x candidates x window]) instead of through a dense
#: first-seen table; the full softmax, which scores the whole catalogue anyway, always uses it.
DENSE_SEEN_LIMIT = 1 << 25


class SeenItems:
    """Which candidates each training position's user had already interacted with.

    ``windows`` [B, W] holds each row's items (0 = padding); position p belongs to row
    ``rows[p]`` and has seen that row's items at columns ``<= steps[p]`` (sequence mode: the
    window up to and including its input; pairs mode: the whole history, steps = W - 1).
    """

    def __init__(self, windows: Tensor, rows: Tensor, steps: Tensor, num_items: int) -> None:
        self.windows, self.rows, self.steps, self.num_items = windows, rows, steps, num_items
        self._first: Tensor | None = None

    @classmethod
    def of_histories(cls, histories: Tensor, num_items: int) -> SeenItems:
        """Pairs mode: each row is one position that has seen its whole history."""
        rows = torch.arange(histories.shape[0], device=histories.device)
        return cls(histories, rows, torch.full_like(rows, histories.shape[1] - 1), num_items)

    def _first_seen(self) -> Tensor:
        """[B, N+1]: the first column of each item in each window (W where it never occurs)."""
        if self._first is None:
            width = self.windows.shape[1]
            columns = torch.arange(width, device=self.windows.device).expand_as(self.windows)
            columns = torch.where(self.windows > 0, columns, width)  # padding never counts as seen
            first = torch.full((self.windows.shape[0], self.num_items + 1), width, dtype=torch.int32,
                               device=self.windows.device)
            self._first = first.scatter_reduce(1, self.windows.long(), columns.int(), reduce="amin")
        return self._first

    def mask(self, ids: Tensor | None = None) -> Tensor:
        """Bool [P, C]: seen candidates; ``ids`` None = every item 0..N, [C] shared, [P, C] per position."""
        steps = self.steps.unsqueeze(1)
        if ids is None:
            return self._first_seen()[self.rows] <= steps
        dense = self.windows.shape[0] * (self.num_items + 1) <= DENSE_SEEN_LIMIT or self._first is not None
        if ids.dim() == 2:
            if dense:
                return self._first_seen()[self.rows.unsqueeze(1), ids] <= steps
            return self._first_match(self.windows[self.rows], ids) <= steps  # [P, W] against [P, C]
        if dense:  # columns first: [B, C], then one row per position (never [P, catalogue])
            return self._first_seen()[:, ids][self.rows] <= steps
        return self._first_match(self.windows, ids.unsqueeze(0).expand(self.windows.shape[0], -1))[self.rows] <= steps

    @staticmethod
    def _first_match(windows: Tensor, ids: Tensor) -> Tensor:
        """[R, C]: the first column of ``windows`` [R, W] holding each of ``ids`` [R, C] (W where none does)."""
        width = windows.shape[1]
        matches = (windows.unsqueeze(1) == ids.unsqueeze(2)) & (windows.unsqueeze(1) > 0)  # [R, C, W]
        columns = torch.arange(width, device=ids.device).view(1, 1, -1)
        return torch.where(matches, columns, width).amin(dim=2)


def _exclude(logits: Tensor, seen: SeenItems | None, ids: Tensor | None, targets: Tensor) -> Tensor:
    """``logits`` with the positions' seen candidates (never their own target) at -inf."""
    if seen is None:
        return logits
    candidates = torch.arange(logits.shape[1], device=logits.device).unsqueeze(0) if ids is None else ids
    if candidates.dim() == 1:
        candidates = candidates.unsqueeze(0)
    hidden = seen.mask(ids) & (candidates != targets.unsqueeze(1))
    return logits.masked_fill(hidden, float("-inf"))


def full_softmax_loss(interactor: Interactor, user: Encoded, item_matrix: Tensor, targets: Tensor,
                      temperature: Tensor | float = 1.0, seen: SeenItems | None = None) -> Tensor:
    """Per-position cross-entropy of the target against every item of ``item_matrix`` [N+1, d]."""
    logits = interactor.score_all(user, item_matrix).float() / temperature
    logits[:, 0] = float("-inf")
    return F.cross_entropy(_exclude(logits, seen, None, targets), targets, reduction="none")


def chunked_full_softmax_loss(interactor: Interactor, user: Encoded, item_matrix: Tensor, targets: Tensor,
                              chunk: int, temperature: Tensor | float = 1.0, seen: SeenItems | None = None) -> Tensor:
    """The full softmax's per-position loss with at most [P, chunk] scores alive at once.

    Pass 1 (no graph) streams the logsumexp over chunks. The loss is then
    ``lse + (Σ_chunks Σ exp(z − lse) − 1) − z_target``: the middle term is 0 in value, and its
    gradient is the softmax, so the gradients are the full softmax's; each chunk's term is
    checkpointed (its scores recomputed in the backward pass), keeping memory bounded.
    """
    def chunk_logits(vector: Tensor, sequence: Tensor | None, mask: Tensor | None, items: Tensor,
                     scale: Tensor | float, start: int) -> Tensor:
        logits = interactor.score_all(Encoded(vector, sequence, mask), items).float() / scale
        if seen is None:
            return logits
        return _exclude(logits, seen, torch.arange(start, start + items.shape[0], device=items.device), targets)

    starts = range(1, item_matrix.shape[0], chunk)  # from item 1: the padding item is never a candidate
    with torch.no_grad():
        running_max = torch.full((targets.shape[0],), float("-inf"), device=targets.device)
        running_sum = torch.zeros(targets.shape[0], device=targets.device)
        for start in starts:
            logits = chunk_logits(user.vector, user.sequence, user.mask, item_matrix[start:start + chunk],
                                  temperature, start)
            new_max = torch.maximum(running_max, logits.max(dim=1).values)
            running_sum = running_sum * torch.exp(running_max - new_max) + torch.exp(
                logits - new_max.unsqueeze(1)).sum(1)
            running_max = new_max
        lse = running_max + torch.log(running_sum)

    def chunk_mass(vector: Tensor, sequence: Tensor | None, mask: Tensor | None, items: Tensor,
                   scale: Tensor | float, start: int) -> Tensor:
        return torch.exp(chunk_logits(vector, sequence, mask, items, scale, start) - lse.unsqueeze(1)).sum(1)

    mass = torch.zeros_like(lse)
    for start in starts:
        mass = mass + checkpoint(chunk_mass, user.vector, user.sequence, user.mask, item_matrix[start:start + chunk],
                                 temperature, start, use_reentrant=False)
    target_logit = interactor.score(user, item_matrix[targets]).float() / temperature
    return lse + (mass - mass.detach()) - target_logit


def sampled_softmax_loss(interactor: Interactor, user: Encoded, targets: Tensor, target_vectors: Tensor,
                         negatives: Tensor | None, negative_vectors: Tensor | None, *, in_batch: Tensor | None = None,
                         in_batch_vectors: Tensor | None = None, in_batch_columns: Tensor | None = None,
                         counts: CandidateCounts | None = None, temperature: Tensor | float = 1.0,
                         seen: SeenItems | None = None) -> Tensor:
    """Per-position cross-entropy of the target against sampled and in-batch negatives.

    ``negatives``: [P, S] per-row (``negative_vectors`` [P, S, d]) or [S] shared ([S, d]);
    ``in_batch``: [U] distinct targets of the step ([U, d]); ``counts``: the logQ correction
    (None: none). Accidental hits (a negative equal to the position's target) are masked, and
    with ``seen`` the candidates each position's user had already interacted with.

    ``in_batch_columns`` [P] (each target's column in ``in_batch``, ``torch.unique``'s inverse)
    takes the fast path with shared negatives: the shared and in-batch candidates are scored in
    one product and the target's own in-batch column is its positive, so no target column is
    scored apart and no [P, candidates] block is concatenated: the same loss and gradients,
    at a fraction of the bookkeeping when the candidates number in the thousands.
    """
    def scaled(logits: Tensor, ids: Tensor) -> Tensor:
        logits = logits.float()
        if not (isinstance(temperature, float) and temperature == 1.0):
            logits = logits / temperature
        if counts is not None:  # per column ([S] or [U], broadcast) or per row ([P, S])
            logits = logits - counts.log_expected(ids)
        return logits

    if in_batch is not None and in_batch_columns is not None and (negatives is None or negatives.dim() == 1):
        return _shared_with_in_batch(interactor, user, targets, negatives, negative_vectors, in_batch,
                                     in_batch_vectors, in_batch_columns, scaled, seen)
    columns = [scaled(interactor.score(user, target_vectors), targets).unsqueeze(1)]
    blocks = [(negatives, negative_vectors)] if negatives is not None else []
    if in_batch is not None:
        blocks.append((in_batch, in_batch_vectors))
    for ids, vectors in blocks:
        assert vectors is not None
        if ids.dim() == 2:  # per row: [P, S, d]
            logits = scaled(interactor.score(user, vectors), ids)
            hits = ids == targets.unsqueeze(1)
        else:  # shared: one matrix product against every position
            logits = scaled(interactor.score_all(user, vectors), ids)
            hits = ids.unsqueeze(0) == targets.unsqueeze(1)
        if seen is not None:
            hits |= seen.mask(ids)
        columns.append(logits.masked_fill(hits, float("-inf")))
    return F.cross_entropy(torch.cat(columns, dim=1), torch.zeros_like(targets), reduction="none")


def _shared_with_in_batch(interactor: Interactor, user: Encoded, targets: Tensor, negatives: Tensor | None,
                          negative_vectors: Tensor | None, in_batch: Tensor, in_batch_vectors: Tensor | None,
                          in_batch_columns: Tensor, scaled: Callable[[Tensor, Tensor], Tensor],
                          seen: SeenItems | None) -> Tensor:
    """``sampled_softmax_loss`` with shared negatives (or none) and in-batch ones, in one block:
    candidates [S shared | U in-batch], each position's positive at S + its in-batch column."""
    assert in_batch_vectors is not None
    shared = 0 if negatives is None else negatives.shape[0]
    ids = in_batch if negatives is None else torch.cat([negatives, in_batch])
    vectors = in_batch_vectors if negative_vectors is None else torch.cat([negative_vectors, in_batch_vectors])
    scores = interactor.score_all(user, vectors)
    logits = scaled(scores, ids)
    if logits is scores:  # unscaled and uncorrected: the interactor's output may be saved for its backward
        logits = logits.clone()
    positives = shared + in_batch_columns
    if negatives is not None:  # accidental hits; the in-batch block holds each target once, as its positive
        logits[:, :shared].masked_fill_(negatives.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    if seen is not None:
        hidden = seen.mask(ids)
        hidden[torch.arange(targets.shape[0], device=targets.device), positives] = False
        logits.masked_fill_(hidden, float("-inf"))
    return F.cross_entropy(logits, positives, reduction="none")
