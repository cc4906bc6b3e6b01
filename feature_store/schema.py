"""Declared columns of a store: what each table holds and which types it accepts.

A domain (ecommerce, news, ...) declares its attribute columns up front. A store created
without a domain is *open*: the first ingest of each table declares its attribute columns
(from RecBole's typed headers, or from the frame's types), and later ingests are validated
against that declaration.
"""

from __future__ import annotations

from enum import Enum

import polars as pl
from pydantic import BaseModel, Field, field_validator

ENTITY_KINDS = ("users", "items", "events")

# Columns every store has, whatever the domain declares.
USER_ID = "user_id"
ITEM_ID = "item_id"
VALID_FROM = "valid_from"
CORE_EVENT_COLUMNS = ("user_id", "item_id", "event_type", "value", "ts")
CORE_ITEM_COLUMNS = ("item_id", "title", "created_at")
# an event may name the recommendation request that showed its item (online attribution)
REQUEST_ID = "request_id"
# a search event: ``event_type`` SEARCH_EVENT, the text in QUERY and no item (its own table, ``searches``)
SEARCH_EVENT = "search"
QUERY = "query"


class ColumnType(str, Enum):
    """Types an attribute column may have; each maps to one DuckDB and one polars type."""

    string = "string"
    int = "int"
    float = "float"
    bool = "bool"
    timestamp = "timestamp"
    string_list = "string_list"
    float_list = "float_list"

    @property
    def sql(self) -> str:
        return _SQL_TYPES[self]

    @property
    def polars(self) -> pl.DataType:
        return _POLARS_TYPES[self]()

    @classmethod
    def from_recbole(cls, token_type: str) -> ColumnType:
        """Map a RecBole atomic-file header type (``token``, ``float_seq``...) to ours."""
        try:
            return _RECBOLE_TYPES[token_type]
        except KeyError:
            raise ValueError(
                f"unknown RecBole column type {token_type!r}; expected one of {sorted(_RECBOLE_TYPES)}"
            ) from None

    @classmethod
    def from_polars(cls, dtype: pl.DataType) -> ColumnType:
        """Infer a column type from a polars dtype (for open stores and frames)."""
        if dtype == pl.Boolean:
            return cls.bool
        if dtype.is_integer():
            return cls.int
        if dtype.is_float() or dtype.is_decimal():
            return cls.float
        if dtype.is_temporal():
            return cls.timestamp
        if isinstance(dtype, (pl.List, pl.Array)):
            inner = dtype.inner
            return cls.float_list if inner.is_numeric() else cls.string_list
        return cls.string


_SQL_TYPES = {
    ColumnType.string: "VARCHAR",
    ColumnType.int: "BIGINT",
    ColumnType.float: "DOUBLE",
    ColumnType.bool: "BOOLEAN",
    ColumnType.timestamp: "TIMESTAMP",
    ColumnType.string_list: "VARCHAR[]",
    ColumnType.float_list: "DOUBLE[]",
}
_POLARS_TYPES = {
    ColumnType.string: pl.String,
    ColumnType.int: pl.Int64,
    ColumnType.float: pl.Float64,
    ColumnType.bool: pl.Boolean,
    ColumnType.timestamp: lambda: pl.Datetime("us"),
    ColumnType.string_list: lambda: pl.List(pl.String),
    ColumnType.float_list: lambda: pl.List(pl.Float64),
}
_RECBOLE_TYPES = {
    "token": ColumnType.string,
    "float": ColumnType.float,
    "token_seq": ColumnType.string_list,
    "float_seq": ColumnType.float_list,
}


class StoreSchema(BaseModel):
    """What a store accepts: attribute columns per table and the allowed event types."""

    name: str = Field("generic", description="Domain (or 'generic') the schema belongs to.")
    open: bool = Field(
        True, description="Whether the first ingest of a table may declare its columns."
    )
    user_columns: dict[str, ColumnType] = Field(default_factory=dict)
    item_columns: dict[str, ColumnType] = Field(
        default_factory=dict, description="Attributes besides item_id, title and created_at."
    )
    event_types: list[str] | None = Field(
        None, description="Allowed event types; None accepts any."
    )
    default_event_type: str = Field(
        "interaction", description="Event type for rows that do not name one."
    )

    @field_validator("user_columns", "item_columns")
    @classmethod
    def _no_core_names(cls, columns: dict[str, ColumnType]) -> dict[str, ColumnType]:
        reserved = {USER_ID, ITEM_ID, VALID_FROM, "title", "created_at"}
        clash = reserved & set(columns)
        if clash:
            raise ValueError(f"attribute columns may not reuse core names: {sorted(clash)}")
        return columns

    def attribute_columns(self, kind: str) -> dict[str, ColumnType]:
        """The declared attribute columns of ``users`` or ``items``."""
        if kind == "users":
            return self.user_columns
        if kind == "items":
            return self.item_columns
        return {}

    def with_columns(self, kind: str, columns: dict[str, ColumnType]) -> StoreSchema:
        """A copy of the schema with attribute columns added to ``users`` or ``items``."""
        field = "user_columns" if kind == "users" else "item_columns"
        merged = {**getattr(self, field), **columns}
        return self.model_copy(update={field: merged})


def table_columns(schema: StoreSchema, kind: str) -> dict[str, ColumnType]:
    """Every column of a table, core ones first, in storage order."""
    if kind == "users":
        return {USER_ID: ColumnType.string, **schema.user_columns, VALID_FROM: ColumnType.timestamp}
    if kind == "items":
        return {
            ITEM_ID: ColumnType.string,
            "title": ColumnType.string,
            "created_at": ColumnType.timestamp,
            **schema.item_columns,
            VALID_FROM: ColumnType.timestamp,
        }
    if kind == "events":
        return {
            USER_ID: ColumnType.string,
            ITEM_ID: ColumnType.string,
            "event_type": ColumnType.string,
            "value": ColumnType.float,
            "ts": ColumnType.timestamp,
            REQUEST_ID: ColumnType.string,
        }
    raise ValueError(f"unknown table kind {kind!r}; expected one of {ENTITY_KINDS}")
