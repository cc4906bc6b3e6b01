"""A domain preset: what a store for that domain holds and how its synthetic data is made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from recengine.errors import ConfigError
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
    generate_in: dict[str, Generator] = Field(
        default_factory=dict, exclude=True,
        description="Synthetic data makers whose text is in another language, by language code "
                    "(`recengine data generate --language zh`); `generate` writes the domain's own.")

    def generator(self, language: str | None = None) -> Generator:
        """The data maker for ``language`` (None: the domain's own); a ConfigError names the others."""
        if language is None:
            if self.generate is None:
                raise ConfigError(f"domain {self.name!r} has no synthetic data generator")
            return self.generate
        if language not in self.generate_in:
            known = ", ".join(sorted(self.generate_in)) or "none besides its own"
            raise ConfigError(f"domain {self.name!r} generates no {language!r} text; other languages: {known}")
        return self.generate_in[language]

    def online_kinds(self) -> tuple[list[str], list[str]]:
        """(click types, conversion types) for attribution."""
        clicks = self.click_events or [self.store_schema.default_event_type]
        return clicks, self.conversion_events or clicks
