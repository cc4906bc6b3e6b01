"""``ease``: EASE (Steck, 2019), the closed-form item-item model, as a pair of encoders.

Used as both encoders with the ``dot`` interactor, it computes exactly EASE's score
X_u · B[:, i] as formula 4.1's inner product:
- as the *user* encoder it returns the multi-hot vector of the user's history (length N+1);
- as the *item* encoder item i's representation is column i of B, fitted in closed form:
  P = (XᵀX + λI)⁻¹, B = −P / diag(P), diag(B) = 0.
There is nothing to learn by gradient: the engine calls :meth:`EaseEncoder.fit` once and
skips the epochs. B is dense [N+1, N+1], so EASE suits catalogues up to ``max_items``.
Set ``model.max_history`` high (e.g. 2048) so a user's whole history reaches the encoder.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from recengine import hookimpl
from recengine.components import ComponentConfig, Encoded, Encoder, EncoderContext
from recengine.errors import ConfigError


class EaseConfig(ComponentConfig):
    l2: float = Field(250.0, gt=0, description="λ, the ridge penalty on the item-item weights.")
    max_items: int = Field(30_000, ge=1, description="Refuse larger catalogues (B is dense N×N).")


class EaseEncoder(Encoder):
    """Multi-hot history (user role) or fitted B columns (item role)."""

    Config = EaseConfig
    config: EaseConfig
    weights: Tensor  # item role only: the fitted B, a buffer registered in __init__

    def __init__(self, context: EncoderContext, config: EaseConfig) -> None:
        super().__init__(context, config)
        size = context.num_items + 1
        if context.num_items > config.max_items:
            raise ConfigError(f"ease needs a dense {context.num_items}² item matrix; the catalogue exceeds "
                             f"max_items={config.max_items}: use the dense or transformer encoders instead")
        self.size = size
        if context.role == "item":
            self.register_buffer("weights", torch.zeros(size, size))

    @property
    def output_dim(self) -> int:
        return self.size

    def fit(self, users: np.ndarray, items: np.ndarray) -> None:
        """Closed-form B from the training interactions (binary user × item matrix)."""
        if self.context.role != "item":
            return
        matrix = np.zeros((int(users.max()) + 1, self.size), dtype=np.float64)
        matrix[users, items] = 1.0
        gram = matrix.T @ matrix
        gram[np.diag_indices_from(gram)] += self.config.l2
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)[None, :]
        np.fill_diagonal(weights, 0.0)
        weights[0, :] = weights[:, 0] = 0.0  # the padding item
        self.weights.copy_(torch.from_numpy(weights.astype(np.float32)))

    def forward(self, batch: dict[str, Tensor]) -> Encoded:
        if self.context.role == "item":
            return Encoded(self.weights.T[batch["ids"]])
        history = batch["history"]
        multi_hot = torch.zeros(history.shape[0], self.size, device=history.device)
        multi_hot.scatter_(1, history, 1.0)
        multi_hot[:, 0] = 0.0
        return Encoded(multi_hot)


@hookimpl
def register_encoders(register: Callable[[str, type[Encoder]], None]) -> None:
    register("ease", EaseEncoder)
