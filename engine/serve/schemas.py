"""Request and response models of the HTTP API (validated by FastAPI → 422 on bad input)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 100


class RequestContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: dict[str, list[Any]] = Field(default_factory=dict,
                                          description="Item column → allowed values, e.g. {\"category\": [\"books\"]}.")
    exclude: list[str] = Field(default_factory=list, max_length=10_000, description="Item ids never to return.")
    time: datetime | None = Field(None,
                                  description="The request's 'now' (freshness); default: the catalogue's newest item.")


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(..., min_length=1, max_length=256)
    k: int = Field(10, ge=1, le=MAX_K)
    context: RequestContext = Field(default_factory=RequestContext)
    explain: bool = True


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    reasons: list[str] = Field(default_factory=list)


class RecommendResponse(BaseModel):
    user_id: str
    items: list[RecommendedItem]
    fallback: bool = Field(description="True when the user was unknown and popular items answered.")
    model: str
    snapshot_version: int | None = None


class ModelInfo(BaseModel):
    domain: str
    bundle: str
    version: int
    path: str
    created_at: str | None = None
    snapshot_version: int | None = None
    items: int
    cold_items: int
    users: int
    retrieval: dict[str, Any] = Field(default_factory=dict,
                                      description="Candidate retrieval: exact scan or IVF (nlist, nprobe, calibrated "
                                                  "recall), and how many user vectors are cached.")


class Health(BaseModel):
    status: str
    domain: str
    model: str | None = None
    snapshot_version: int | None = None
