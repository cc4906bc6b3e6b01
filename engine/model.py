"""Model assembly: a user encoder, an item encoder and an interactor, found by name.

Entity features live in the model as buffers (saved with the weights), so a bundle
carries everything it needs to encode users and items at serving time.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recengine.components import Encoded, EncoderContext, FeatureSpec, InteractorContext
from recengine.config import ModelConfig
from recengine.errors import ConfigError
from recengine.event_times import HISTORY_TS, QUERY_TS
from recengine.plugin_manager import PluginManager, get_plugin_manager
from recengine.searches import SEARCH_FEATURE, SearchLog


class FeatureBuffers(nn.Module):
    """Feature arrays (``cat:``/``num:``/``vec:``) as buffers, gathered by entity index."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.names = sorted(arrays)
        for i, name in enumerate(self.names):
            self.register_buffer(f"f{i}", torch.from_numpy(np.array(arrays[name], copy=True)))

    def gather(self, index: Tensor) -> dict[str, Tensor]:
        return {name: getattr(self, f"f{i}")[index] for i, name in enumerate(self.names)}


class RecModel(nn.Module):
    """user encoder × item encoder → interactor; item index 0 is padding."""

    known_items: Tensor  # bool [N+1], a buffer registered in __init__

    def __init__(self, config: ModelConfig, user_spec: FeatureSpec, item_spec: FeatureSpec,
                 user_arrays: dict[str, np.ndarray], item_arrays: dict[str, np.ndarray],
                 manager: PluginManager | None = None, known_items: np.ndarray | None = None,
                 normalize: bool = False, initialise: bool = True) -> None:
        super().__init__()
        manager = manager or get_plugin_manager()
        self.config = config
        self.num_items = item_spec.num_ids
        # items with training events; the others (cold) are encoded from features alone, with
        # id 0, exactly as items arriving after training will be at serving time
        known = np.ones(self.num_items + 1, dtype=bool) if known_items is None else known_items.astype(bool)
        self.register_buffer("known_items", torch.from_numpy(known))
        self.user_features = FeatureBuffers(user_arrays)
        self.item_features = FeatureBuffers(item_arrays)
        self.item_encoder = manager.build(
            "encoders", config.item_encoder,
            EncoderContext("item", config.dim, item_spec, self.num_items, config.max_history,
                           # initialisation data only for a model about to train: a reloaded one's weights replace it
                           vectors={name[4:]: array for name, array in item_arrays.items()
                                    if initialise and name.startswith("vec:")}),
            where="model.item_encoder")
        self.user_encoder = manager.build(
            "encoders", config.user_encoder,
            EncoderContext("user", config.dim, user_spec, self.num_items, config.max_history,
                           embed_items=self.embed_items),
            where="model.user_encoder")
        self.interactor = manager.build("interactors", config.interactor, InteractorContext(config.dim),
                                        where="model.interactor")
        # whether the user encoder reads event times: callers then pass ``times`` to encode_users
        self.reads_event_times = type(self.user_encoder).reads_event_times(config.user_encoder.params)
        # whether the user tower reads the pooled recent-search vector (model.searches): callers
        # then pass ``searches`` to encode_users, pooled with :attr:`search_log` or the snapshot's
        self.reads_searches = config.searches is not None
        self.search_log: SearchLog | None = None  # set by whoever prepared the data (not saved: the store has it)
        self.normalize = normalize
        if normalize:  # TrainConfig.normalize: a hook, so every caller of either tower gets unit vectors
            self.user_encoder.register_forward_hook(_unit_vectors)
            self.item_encoder.register_forward_hook(_unit_vectors)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for buffer in self.buffers():
            return buffer.device
        return torch.device("cpu")

    def embed_items(self, items: Tensor) -> Tensor:
        """Item representations for an index tensor of any shape: [...] → [..., d]."""
        flat = items.reshape(-1)
        ids = torch.where(self.known_items[flat], flat, torch.zeros_like(flat))
        encoded = self.item_encoder({"ids": ids, **self.item_features.gather(flat)}).vector
        return encoded.view(*items.shape, -1)

    def item_matrix(self, chunk: int = 65_536) -> Tensor:
        """All items' representations [N+1, d] (row 0 = padding), computed in chunks."""
        index = torch.arange(self.num_items + 1, device=self.device)
        return torch.cat([self.embed_items(part) for part in index.split(chunk)])

    def encode_users(self, users: Tensor, history: Tensor, times: tuple[Tensor, Tensor] | None = None,
                     searches: Tensor | None = None) -> Encoded:
        """The user tower over ``history`` [B, L]; ``times`` = (``history_ts`` [B, L], ``query_ts``
        [B]) epoch seconds, given (and needed) only when :attr:`reads_event_times`; ``searches``
        [B, d], the pooled recent-search vectors, given (and needed) only when :attr:`reads_searches`."""
        batch = {"ids": users, "history": history, **self.user_features.gather(users)}
        if times is not None:
            batch[HISTORY_TS], batch[QUERY_TS] = times
        if self.reads_searches:
            if searches is None:
                raise ConfigError("this model's user tower reads recent searches (model.searches) but none were "
                                  "given: pool them with RecModel.pool_searches")
            batch[f"vec:{SEARCH_FEATURE}"] = searches.to(self.device, torch.float32)
        return self.user_encoder(batch)

    def pool_searches(self, users: np.ndarray, at: np.ndarray) -> Tensor | None:
        """The pooled recent-search vectors [B, d] of ``users`` at epoch seconds ``at`` from
        :attr:`search_log` (None for a model that reads none)."""
        if not self.reads_searches:
            return None
        if self.search_log is None:
            raise ConfigError("this model reads recent searches (model.searches) but has no search log: "
                              "prepare the data from a store with this config (recengine.dataset.load_search_log)")
        return torch.from_numpy(self.search_log.pool(users, at)).to(self.device)

    def forward(self, users: Tensor, history: Tensor, items: Tensor, searches: Tensor | None = None) -> Tensor:
        """Scores of ``items`` ([B] or [B, K]) for a batch of users."""
        encoded = self.encode_users(users, history, searches=searches)
        return self.interactor.score(encoded, self.embed_items(items))


def _unit_vectors(module: nn.Module, inputs: object, output: Encoded) -> Encoded:
    """An encoder's output L2-normalised (its vector and every sequence position): dot scores become cosines."""
    sequence = None if output.sequence is None else F.normalize(output.sequence, dim=-1)
    return replace(output, vector=F.normalize(output.vector, dim=-1), sequence=sequence)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
