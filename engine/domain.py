"""A domain preset: what a store for that domain holds and how its synthetic data is made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from recengine.feature_store.schema import StoreSchema
from recengine.synthetic import SyntheticData

__all__ = ["Domain", "Generator", "SyntheticData"]


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
    click_events: list[str] | None = Field(
        None, description="Event types that count as a click on a recommendation in online metrics "
                          "(default: the schema's default event type).")
    conversion_events: list[str] | None = Field(
        None, description="Event types that count as a conversion (default: the click types).")
    generate: Generator | None = Field(None, exclude=True, description="Synthetic data maker.")

    def online_kinds(self) -> tuple[list[str], list[str]]:
        """(click types, conversion types) for attribution."""
        clicks = self.click_events or [self.store_schema.default_event_type]
        return clicks, self.conversion_events or clicks
