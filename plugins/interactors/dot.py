"""``dot``: the design's formula 4.1, similarity(u, i) = u · i = Σ_k u_k · i_k.

The same product scores pairs, candidate lists and the whole catalogue (one matrix
multiply), which is also what retrieval uses.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from recengine import hookimpl
from recengine.components import Encoded, Interactor


class DotInteractor(Interactor):
    """Inner product of the user vector with item vectors."""

    uses_sequence = False  # the user vector alone: serving can cache it per snapshot

    def score(self, user: Encoded, items: Tensor) -> Tensor:
        if items.dim() == 2:  # [B, d] pairs
            return (user.vector * items).sum(-1)
        return (items @ user.vector.unsqueeze(-1)).squeeze(-1)  # [B, K, d] candidates

    def score_all(self, user: Encoded, item_matrix: Tensor) -> Tensor:
        return user.vector @ item_matrix.T


@hookimpl
def register_interactors(register: Callable[[str, type[Interactor]], None]) -> None:
    register("dot", DotInteractor)
