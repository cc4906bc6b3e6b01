"""A domain preset: what a store for that domain holds and how its synthetic data is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from recengine.feature_store.schema import StoreSchema


class SyntheticData(BaseModel):
    """Generated users, items and events of one domain, ready to ingest."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    users: pl.DataFrame
    items: pl.DataFrame
    events: pl.DataFrame

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``users.parquet``, ``items.parquet`` and ``events.parquet`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for kind in ("users", "items", "events"):
            path = out / f"{kind}.parquet"
            getattr(self, kind).write_parquet(path)
            paths[kind] = path
        return paths


Generator = Callable[[int, int, int, int], SyntheticData]
"""``generate(users, items, events, seed)``: synthetic data with learnable structure."""


class Domain(BaseModel):
    """A domain preset (ecommerce, news, video, social, or one a plugin adds)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    description: str
    store_schema: StoreSchema
    event_weights: dict[str, float] = Field(
        default_factory=dict, description="Training weight of each event type."
    )
    text_fields: list[str] = Field(
        default_factory=lambda: ["title"], description="Item columns that make up item text."
    )
    pipeline: dict[str, Any] = Field(
        default_factory=dict,
        description="Default pipeline config for this domain (a partial PipelineConfig: model, train, ranking).",
    )
    generate: Generator | None = Field(None, exclude=True, description="Synthetic data maker.")
