"""Row-sparse updates for the large embedding tables (a million user or item ids).

Adam over a dense gradient touches every row of every table each step: at a million users and
items (128M weights at dim 64) a step took 3 s, nearly all of it the optimiser and the
gradient's memset, whatever the batch. Tables with at least :data:`SPARSE_MIN_ROWS` rows are
switched to sparse gradients (``nn.Embedding.sparse``: only the batch's rows) and updated by
``SparseAdam`` (lazy Adam: a row's moments move when the row is used); every other parameter
keeps Adam. Smaller catalogues keep plain Adam, so their training is unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["SPARSE_MIN_ROWS", "SplitAdam", "make_optimizer", "sparse_tables"]

SPARSE_MIN_ROWS = 100_000


def sparse_tables(model: nn.Module, min_rows: int = SPARSE_MIN_ROWS) -> list[nn.Embedding]:
    """The embedding tables of ``model`` with at least ``min_rows`` rows (plain lookups only)."""
    return [m for m in model.modules() if isinstance(m, nn.Embedding) and m.num_embeddings >= min_rows
            and m.max_norm is None and not m.scale_grad_by_freq]


class SplitAdam(torch.optim.Optimizer):
    """Adam over the dense parameters and SparseAdam over the sparse tables, stepped as one
    optimiser; its state dict is the standard layout (dense parameters first), so checkpoints
    save and load it like a plain Adam's."""

    def __init__(self, dense_groups: list[dict[str, Any]], sparse: list[torch.Tensor], lr: float) -> None:
        self.dense = torch.optim.Adam(dense_groups, lr=lr)
        self.sparse = torch.optim.SparseAdam(sparse, lr=lr)
        self.defaults = dict(self.dense.defaults)
        self._parts = (self.dense, self.sparse)

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [*self.dense.param_groups, *self.sparse.param_groups]

    @property
    def state(self) -> Any:  # type: ignore[override]
        return {**self.dense.state, **self.sparse.state}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self._parts:
            part.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for part in self._parts:
            part.step()

    def state_dict(self) -> dict[str, Any]:
        dense, sparse = self.dense.state_dict(), self.sparse.state_dict()
        offset = sum(len(g["params"]) for g in dense["param_groups"])
        groups = dense["param_groups"] + [{**g, "params": [i + offset for i in g["params"]]}
                                          for g in sparse["param_groups"]]
        state = {**dense["state"], **{int(i) + offset: v for i, v in sparse["state"].items()}}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        split = len(self.dense.param_groups)
        offset = sum(len(g["params"]) for g in groups[:split])
        state = {int(k): v for k, v in state_dict["state"].items()}
        self.dense.load_state_dict({"param_groups": groups[:split],
                                    "state": {k: v for k, v in state.items() if k < offset}})
        self.sparse.load_state_dict({"param_groups": [{**g, "params": [i - offset for i in g["params"]]}
                                                      for g in groups[split:]],
                                     "state": {k - offset: v for k, v in state.items() if k >= offset}})


def make_optimizer(model: nn.Module, groups: list[dict[str, Any]], lr: float, weight_decay: float,
                   allow_sparse: bool) -> torch.optim.Optimizer:
    """Adam over ``groups``; with ``allow_sparse`` (one process, no weight decay, no fp16 scaler)
    and a large table in ``model``, that table's rows go sparse under :class:`SplitAdam`."""
    tables = sparse_tables(model) if allow_sparse and weight_decay == 0 else []
    if not tables:
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    sparse = {id(t.weight) for t in tables}
    for table in tables:
        table.sparse = True
    dense_groups = [{**g, "params": [p for p in g["params"] if id(p) not in sparse]} for g in groups]
    return SplitAdam([g for g in dense_groups if g["params"]], [t.weight for t in tables], lr)
