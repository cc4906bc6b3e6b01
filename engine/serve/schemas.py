"""Request and response models of the HTTP API (validated by FastAPI → 422 on bad input).

Requests are strict: ``"k": "5"``, ``"k": true`` or ``"explain": 0`` are errors, not coerced;
``context.time`` takes an ISO 8601 string (JSON has no datetime type) but never a number.
Every string and list has a bound, so no request can make the server hold or echo much.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
)

MAX_K = 100
MAX_ID_CHARS = 256  # user ids, item ids, string filter values
MAX_COLUMN_CHARS = 64  # filter column names
MAX_EXCLUDE = 1_000  # item ids in context.exclude
MAX_FILTERS = 16  # filtered columns per request
MAX_FILTER_VALUES = 100  # allowed values per filtered column

Identifier = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_ID_CHARS)]
ColumnName = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_COLUMN_CHARS)]
FilterText = Annotated[str, StringConstraints(strict=True, max_length=MAX_ID_CHARS)]
FilterValue = FilterText | StrictBool | StrictInt | StrictFloat  # a scalar: never a list or an object


def _iso_text(value: Any) -> Any:
    """``context.time`` as JSON carries it: an ISO 8601 string (or null), never a number."""
    if value is None or isinstance(value, str | datetime):
        return value
    raise ValueError("time must be an ISO 8601 datetime string, e.g. \"2024-05-01T12:00:00Z\"")


def _within_utc(value: datetime | None) -> datetime | None:
    """Refuse a time that has no UTC equivalent (``0001-01-01T00:00:00+01:00`` is in year 0 in
    UTC): the rankers compare times in UTC, and would fail on it with a 500."""
    if value is not None and value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("time is out of range once converted to UTC (years 1 to 9999)") from None
    return value


class RequestContext(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    filters: dict[ColumnName, Annotated[list[FilterValue], Field(max_length=MAX_FILTER_VALUES)]] = Field(
        default_factory=dict, max_length=MAX_FILTERS,
        description="Item column → allowed values (strings, numbers or booleans), e.g. {\"category\": [\"books\"]}. "
                    "The list holds k items whenever k items of the catalogue pass the filters.")
    exclude: list[Identifier] = Field(default_factory=list, max_length=MAX_EXCLUDE,
                                      description="Item ids never to return.")
    time: Annotated[datetime | None, Field(strict=False), BeforeValidator(_iso_text),
                   AfterValidator(_within_utc)] = Field(
        None, description="The request's 'now' as an ISO 8601 string, for time-aware rankers (freshness; default: "
                          "the catalogue's newest item). Where no ranker reads it, the response's notes say so.")


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Identifier
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
    notes: list[str] = Field(default_factory=list,
                             description="What the request asked for that did not apply, e.g. a context.time "
                                         "that no ranker of this domain reads.")


class ModelInfo(BaseModel):
    domain: str
    bundle: str
    version: int
    path: str | None = Field(None, description="The bundle's directory on the server: only for requests carrying "
                                               "the operator key (X-Admin-Key equal to RECENGINE_ADMIN_KEY).")
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


class ErrorBody(BaseModel):
    """Every error the API answers (400, 404, 413, 422, 503, 500) has this shape."""

    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong: a sentence, or for 422 validation errors one entry per problem "
                    "(type, loc, msg, and the offending input, truncated).")
    code: str = Field(description="Machine-readable kind, e.g. validation_error, invalid_request, not_found, "
                                  "body_too_large, malformed_json, not_ready, internal_error.")
    request_id: str = Field(description="The request's id, also in the X-Request-ID header and the server log.")
