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
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    model_validator,
)

from recengine.feature_store.schema import SEARCH_EVENT, ColumnType

MAX_K = 100
MAX_ID_CHARS = 256  # user ids, item ids, string filter values
MAX_COLUMN_CHARS = 64  # filter column names
MAX_EXCLUDE = 1_000  # item ids in context.exclude
MAX_FILTERS = 16  # filtered columns per request
MAX_FILTER_VALUES = 100  # allowed values per filtered column
MAX_HISTORY = 200  # items in a request's own history

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


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    item_id: Identifier
    event_type: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_COLUMN_CHARS)] | None = None


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Identifier | None = Field(None, description="The user; may be left out when ``history`` is given "
                                                        "(an anonymous or session visitor).")
    k: int = Field(10, ge=1, le=MAX_K)
    context: RequestContext = Field(default_factory=RequestContext)
    explain: bool = True
    history: Annotated[list[Identifier | HistoryEntry], Field(max_length=MAX_HISTORY)] | None = Field(
        None, description="The visitor's recent items, oldest first (ids, or {item_id, event_type}), used instead "
                          "of the stored history; ids the catalogue lacks are ignored and the notes say so.")

    log_impressions: bool = Field(True, description="Log what this answer shows as impressions (online metrics, "
                                                     "experiments); false for a preview that no user sees, such "
                                                     "as the dashboard's lookups.")
    _request_id: str | None = PrivateAttr(None)  # the HTTP request's id: impressions are logged under it

    @model_validator(mode="after")
    def _someone(self) -> RecommendRequest:
        if self.user_id is None and self.history is None:
            raise ValueError("give user_id, history, or both")
        return self

    def history_entries(self) -> list[HistoryEntry] | None:
        if self.history is None:
            return None
        return [HistoryEntry(item_id=e) if isinstance(e, str) else e for e in self.history]


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    reasons: list[str] = Field(default_factory=list)


class RecommendResponse(BaseModel):
    user_id: str | None
    items: list[RecommendedItem]
    fallback: bool = Field(description="True when the user was unknown and popular items answered.")
    model: str
    snapshot_version: int | None = None
    notes: list[str] = Field(default_factory=list,
                             description="What the request asked for that did not apply, e.g. a context.time "
                                         "that no ranker of this domain reads.")
    request_id: str | None = Field(None, description="This answer's id (also X-Request-ID): what it showed is "
                                                     "logged under it; send it with the events it leads to.")
    experiment: str | None = Field(None, description="The running experiment that chose this answer, if any.")
    arm: str | None = Field(None, description="The experiment arm that answered (\"interleaved\": both arms' "
                                              "items, drafted in turn).")


class OfflineMetrics(BaseModel):
    """How the serving bundle scored offline when it was trained, beside its baselines."""

    protocol: str | None = Field(None, description="The evaluation protocol (seq, gen, cold, rating).")
    valid: dict[str, float] = Field(default_factory=dict, description="Validation metrics at the best epoch.")
    test: dict[str, float] = Field(default_factory=dict, description="Test metrics of the model, e.g. ndcg@10.")
    baselines: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="The same test metrics of the baselines: popularity (and random for "
                                          "cold items, the mean rating for ratings).")
    test_users: int | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None


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
    offline: OfflineMetrics | None = Field(None, description="The bundle's offline evaluation (its metrics.json): "
                                                             "None for a bundle saved without one.")
    reads_need_key: bool = Field(False, description="Whether reads (/recommend, /similar, ...) need a key of the "
                                                    "domain (served with --require-key-for-reads).")


class RecentEvent(BaseModel):
    item_id: str
    title: str | None = None
    event_type: str | None = None
    ts: datetime | None = Field(None, description="When it happened (UTC); null where the replica does not know.")


class UserHistoryResponse(BaseModel):
    """A user's recent events as the replica answering sees them (snapshot + live events)."""

    user_id: str
    events: list[RecentEvent] = Field(description="Newest first.")


MAX_HISTORY_LIMIT = 200  # events a history read answers at most


class Health(BaseModel):
    status: str
    domain: str
    model: str | None = None
    snapshot_version: int | None = None
    live_seq: int | None = Field(None, description="The last live batch this replica has merged.")
    live_batches: int | None = Field(None, description="Live batches merged since the snapshot (not yet published).")
    writer_seq: int | None = Field(None, description="The writer's last committed batch, as last seen.")
    lag_batches: int | None = Field(None, description="Committed batches this replica has not merged yet.")
    experiment: str | None = Field(None, description="The experiment this replica serves, if any.")


MAX_BATCH_RECORDS = 1_000  # records per write request
MAX_FIELDS = 64  # fields per record
JsonScalar = Annotated[str, StringConstraints(strict=True, max_length=4_096)] | StrictBool | StrictInt | StrictFloat
FieldValue = JsonScalar | Annotated[list[JsonScalar | None], Field(max_length=256)] | None


MAX_QUERY_CHARS = 1_024  # a search event's query text


class EventRecord(BaseModel):
    """An event with an item, or a search: a ``query`` and no item (``event_type`` ``search``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Identifier
    item_id: Identifier | None = Field(None, description="The item the event is about (every event but a search).")
    query: Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1,
                                            max_length=MAX_QUERY_CHARS)] | None = Field(
        None, description="What the user searched for: a search event names a query and no item.")
    event_type: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_COLUMN_CHARS)] | None = (
        Field(None, description="One of the domain's event types (default: its default type); 'search' or "
                                "nothing for a search."))
    value: StrictFloat | StrictInt | None = Field(None, description="A rating, watch fraction... (default 1).")
    ts: Annotated[str, StringConstraints(strict=True, max_length=64)] | StrictInt | StrictFloat | None = Field(
        None, description="When it happened: ISO 8601 or Unix seconds/milliseconds (default: server time).")
    event_id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)] | None = Field(
        None, description="The client's id for the event: a retried batch skips events stored before under it.")
    request_id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_ID_CHARS)] | None = Field(
        None, description="The request_id of the /recommend answer that showed this item, if it came from one: "
                          "attributes the event to that answer in online metrics.")


    @model_validator(mode="after")
    def _an_item_or_a_query(self) -> EventRecord:
        if (self.item_id is None) == (self.query is None):
            raise ValueError("an event names an item_id, or (a search) a query, not both and not neither")
        if self.query is not None and self.event_type not in (None, SEARCH_EVENT):
            raise ValueError(f"a search event (a query) has event_type {SEARCH_EVENT!r} or none, "
                             f"not {self.event_type!r}")
        return self


class EventsBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[EventRecord] = Field(min_length=1, max_length=MAX_BATCH_RECORDS)


class EntityBatch(BaseModel):
    """Items or users: each record an id and the fields to set; an update changes only the
    fields it names (``replace``: the record is the whole row)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    replace: bool = Field(False, description="Write each record as the whole row: fields it does not name "
                                             "become empty.")


class ItemsBatch(EntityBatch):
    items: list[Annotated[dict[ColumnName, FieldValue], Field(min_length=1, max_length=MAX_FIELDS)]] = Field(
        min_length=1, max_length=MAX_BATCH_RECORDS,
        description="Item records: item_id and the domain's item columns, e.g. {\"item_id\": \"a1\", \"title\": ...}.")


class UsersBatch(EntityBatch):
    users: list[Annotated[dict[ColumnName, FieldValue], Field(min_length=1, max_length=MAX_FIELDS)]] = Field(
        min_length=1, max_length=MAX_BATCH_RECORDS,
        description="User records: user_id and the domain's user columns.")


class WriteAck(BaseModel):
    seq: int = Field(description="The batch's sequence number in the domain's live log (durable when answered).")
    accepted: int = Field(description="Records written.")
    duplicates: int = Field(0, description="Events skipped: stored before under the same event_id.")
    visible: bool = Field(description="Whether this replica already answers with the batch merged.")


class ErrorBody(BaseModel):
    """Every error the API answers (400, 404, 413, 422, 503, 500) has this shape."""

    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong: a sentence, or for 422 validation errors one entry per problem "
                    "(type, loc, msg, and the offending input, truncated).")
    code: str = Field(description="Machine-readable kind, e.g. validation_error, invalid_request, not_found, "
                                  "body_too_large, malformed_json, not_ready, internal_error, invalid_records, "
                                  "unauthorized, forbidden, writer_unavailable.")
    record: int | None = Field(None, description="For a refused write batch: the index of the first bad record.")
    field: str | None = Field(None, description="For a refused write batch: the field of that record.")
    request_id: str = Field(description="The request's id, also in the X-Request-ID header and the server log.")


Text = Annotated[str, StringConstraints(strict=True, max_length=4_096)]
Number = StrictInt | StrictFloat
# what a record may send for a column of each type (as in a CSV file, a number may name a text value)
COLUMN_VALUES: dict[ColumnType, Any] = {
    ColumnType.string: Text | StrictInt,
    ColumnType.int: StrictInt,
    ColumnType.float: Number,
    ColumnType.bool: StrictBool,
    ColumnType.timestamp: Annotated[str, StringConstraints(strict=True, max_length=64)] | Number,
    ColumnType.string_list: Annotated[list[Text], Field(max_length=256)],
    ColumnType.float_list: Annotated[list[Number], Field(max_length=4_096)],
}


def domain_write_models(domain: str) -> tuple[type[EventsBatch], type[ItemsBatch], type[UsersBatch]]:
    """The write batches as this domain's store takes them, so its OpenAPI schema documents
    them: events limited to its event types, item and user records to its declared columns.
    A domain without a preset (an open store) keeps the generic models."""
    from typing import Literal

    from pydantic import create_model

    from recengine.errors import EngineError
    from recengine.feature_store.schema import ITEM_ID, USER_ID
    from recengine.plugin_manager import get_plugin_manager

    try:
        schema = get_plugin_manager().domain(domain).store_schema
    except EngineError:
        return EventsBatch, ItemsBatch, UsersBatch
    events: type[EventsBatch] = EventsBatch
    if schema.event_types:
        kinds = Literal[tuple(dict.fromkeys([*schema.event_types, SEARCH_EVENT]))]  # type: ignore[valid-type]
        described = f"One of {schema.event_types} (default {schema.default_event_type})."
        record = create_model("DomainEventRecord", __base__=EventRecord,
                              event_type=(kinds | None, Field(None, description=described)))  # type: ignore[arg-type]
        events = create_model("DomainEventsBatch", __base__=EventsBatch,
                              events=(list[record], Field(min_length=1, max_length=MAX_BATCH_RECORDS)))
    if schema.open:
        return events, ItemsBatch, UsersBatch

    def entity(name: str, id_column: str, columns: dict[str, ColumnType]) -> type[BaseModel]:
        fields: dict[str, Any] = {id_column: (Identifier, ...)}
        fields.update({column: (COLUMN_VALUES[kind] | None, None) for column, kind in columns.items()
                       if column != id_column})
        return create_model(name, __config__=ConfigDict(extra="forbid", strict=True), **fields)

    item = entity("DomainItemRecord", ITEM_ID, {"title": ColumnType.string, "created_at": ColumnType.timestamp,
                                                **schema.item_columns})
    user = entity("DomainUserRecord", USER_ID, dict(schema.user_columns))
    items = create_model("DomainItemsBatch", __base__=ItemsBatch,
                         items=(list[item], Field(min_length=1, max_length=MAX_BATCH_RECORDS)))  # type: ignore[valid-type]
    users = create_model("DomainUsersBatch", __base__=UsersBatch,
                         users=(list[user], Field(min_length=1, max_length=MAX_BATCH_RECORDS)))  # type: ignore[valid-type]
    return events, items, users
