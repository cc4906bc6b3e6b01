"""Online lookups from a published snapshot held in memory (never the live DuckDB file).

:class:`OnlineStore` answers "user attributes + last-N history" and "item features and
vectors" with dictionary lookups into frames loaded from Parquet. :meth:`OnlineStore.refresh`
loads a newer published snapshot beside the current one and swaps a single reference, so
concurrent readers see either the old snapshot or the new one, never a mix.
:meth:`OnlineStore.user_segment` and :meth:`OnlineStore.segment_popularity` answer "what do
users like this one interact with" for users with attributes but no history (cold start).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recengine.feature_store.errors import SnapshotError
from recengine.feature_store.schema import ITEM_ID, USER_ID, VALID_FROM
from recengine.feature_store.snapshot import SnapshotInfo, current_version_dir, read_manifest

# a segment keeps narrowing while at least this many users share its attributes
MIN_SEGMENT_USERS = 20
# attributes with more distinct values than this (ids, free text) never define a segment
MAX_SEGMENT_VALUES = 100
# the columns the lookups read from each snapshot table
TABLE_COLUMNS = {
    "users": (USER_ID, VALID_FROM),
    "items": (ITEM_ID, VALID_FROM),
    "histories": (USER_ID, "items", "ts", "event_types"),
    "item_vectors": (ITEM_ID, "name", "vector"),
    "seen": (USER_ID, "event_type", "items"),
    "searches": (USER_ID, "queries", "ts"),
    "query_vectors": ("name", "query", "vector"),
}
OPTIONAL_TABLES = ("seen", "searches", "query_vectors")  # absent from snapshots written before them


@dataclass(frozen=True)
class UserFeatures:
    """A user's current attributes and most recent items, oldest first."""

    user_id: str
    attributes: dict[str, Any]
    history: list[str]
    history_ts: list[datetime]
    history_event_types: list[str]


@dataclass(frozen=True)
class ItemVectors:
    """One named vector set: ``matrix[i]`` is the vector of ``ids[i]``."""

    name: str
    ids: list[str]
    matrix: np.ndarray
    index: dict[str, int]


@dataclass(frozen=True)
class Segment:
    """Users sharing some of one user's attributes: (column, value) pairs, coarsest first."""

    attributes: tuple[tuple[str, Any], ...]

    @property
    def description(self) -> str:
        """e.g. ``"gender: M, occupation: student"``."""
        return ", ".join(f"{column}: {value}" for column, value in self.attributes)


@dataclass(frozen=True)
class SegmentItems:
    """Items in the histories of a segment's users, with their event counts, best first
    (ties by item id)."""

    segment: Segment
    item_ids: list[str]
    counts: np.ndarray  # [len(item_ids)] events per item, aligned with ``item_ids``


@dataclass
class SnapshotData:
    """Everything one snapshot version holds, indexed for lookups; immutable once built."""

    version: int
    path: Path
    users: pl.DataFrame
    items: pl.DataFrame
    histories: pl.DataFrame
    user_index: dict[str, int]
    item_index: dict[str, int]
    history_index: dict[str, int]
    vectors: dict[str, ItemVectors] = field(default_factory=dict)
    seen: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # user → event type → items
    # every history's timestamps in one datetime64 array (user i: offsets[i]:offsets[i+1]);
    # numpy turns a slice into datetimes ~10x faster than polars' list-to-Python conversion
    history_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    history_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="datetime64[us]"))
    live_seq: int = 0  # the store's live log is folded in up to this sequence number
    searches: dict[str, tuple[list[str], list[datetime]]] = field(default_factory=dict)  # user → recent, oldest first
    query_vectors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # set → query → vector

    @classmethod
    def load(cls, path: str | Path) -> SnapshotData:
        """Read and index one snapshot version; ``SnapshotError`` names the file when any is
        missing or damaged, so a half-written snapshot is never served."""
        path = Path(path)
        info = read_manifest(path)
        _check_tables(path, info)
        users = _latest(_read_table(path, "users"), USER_ID)
        items = _latest(_read_table(path, "items"), ITEM_ID)
        histories = _read_table(path, "histories")
        vectors = _load_vectors(_read_table(path, "item_vectors"))
        seen: dict[str, dict[str, list[str]]] = {}
        for user_id, event_type, seen_items in _read_table(path, "seen").iter_rows():
            seen.setdefault(user_id, {})[event_type] = seen_items
        searches = {user: (queries, times) for user, queries, times in
                    _read_table(path, "searches").select(TABLE_COLUMNS["searches"]).iter_rows()}
        query_vectors: dict[str, dict[str, np.ndarray]] = {}
        for name, query, vector in _read_table(path, "query_vectors").iter_rows():
            query_vectors.setdefault(name, {})[query] = np.asarray(vector, dtype=np.float32)
        offsets = np.zeros(histories.height + 1, dtype=np.int64)
        np.cumsum(histories["ts"].list.len().to_numpy(), out=offsets[1:])
        history_ts = histories["ts"].explode(empty_as_null=False).cast(pl.Datetime("us")).to_numpy()
        return cls(
            version=info.version, path=path, users=users, items=items, histories=histories,
            user_index=_index(users[USER_ID]), item_index=_index(items[ITEM_ID]),
            history_index=_index(histories[USER_ID]), vectors=vectors,
            history_offsets=offsets, history_ts=history_ts, seen=seen, live_seq=info.live_seq,
            searches=searches, query_vectors=query_vectors,
        )


def _check_tables(path: Path, info: SnapshotInfo) -> None:
    """Every table the manifest lists is there with a readable footer and the row count it
    recorded (footers only: cheap), so a truncated, missing or swapped file is refused before
    anything is loaded, the events no lookup reads included."""
    for table, expected in info.counts.items():
        file = path / f"{table}.parquet"
        if not file.is_file():
            raise SnapshotError(str(path), file.name, "is missing")
        with _parquet_errors(path, file):
            rows = pl.scan_parquet(file).select(pl.len()).collect().item()
        if rows != expected:
            raise SnapshotError(str(path), file.name, f"has {rows} rows where manifest.json says {expected}")


def _read_table(path: Path, table: str) -> pl.DataFrame:
    """One table, refused (``SnapshotError``) unless it decodes and has the columns the lookups need."""
    file = path / f"{table}.parquet"
    columns = TABLE_COLUMNS[table]
    if table in OPTIONAL_TABLES and not file.exists():  # snapshots written before these tables
        return pl.DataFrame(schema=list(columns))
    with _parquet_errors(path, file):
        frame = pl.read_parquet(file)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise SnapshotError(str(path), file.name, f"lacks column(s) {missing}")
    return frame


@contextmanager
def _parquet_errors(path: Path, file: Path) -> Iterator[None]:
    """A file that is absent or does not decode as Parquet becomes one ``SnapshotError`` line."""
    try:
        yield
    except FileNotFoundError:
        raise SnapshotError(str(path), file.name, "is missing") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        reason = next(iter(str(exc).splitlines()), type(exc).__name__)
        raise SnapshotError(str(path), file.name, f"is not readable Parquet (truncated or corrupt): {reason}") from None


def _latest(frame: pl.DataFrame, id_column: str) -> pl.DataFrame:
    """Each id's newest attribute version, without the ``valid_from`` bookkeeping column."""
    return frame.sort(id_column, VALID_FROM).unique(id_column, keep="last", maintain_order=True).drop(VALID_FROM)


def _index(ids: pl.Series) -> dict[str, int]:
    return dict(zip(ids.to_list(), range(ids.len())))


def _load_vectors(frame: pl.DataFrame) -> dict[str, ItemVectors]:
    vectors = {}
    for (name,), group in frame.group_by("name", maintain_order=True):
        ids = group[ITEM_ID].to_list()
        matrix = np.asarray(group["vector"].to_list(), dtype=np.float32)
        vectors[str(name)] = ItemVectors(str(name), ids, matrix, dict(zip(ids, range(len(ids)))))
    return vectors


class OnlineStore:
    """Lookups from the published snapshot under ``root``; call :meth:`refresh` to pick up a newer one."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._swap_lock = threading.Lock()
        self._data = SnapshotData.load(current_version_dir(self.root))

    @property
    def data(self) -> SnapshotData:
        """The snapshot in use; take it once per request to read one consistent version."""
        return self._data

    @property
    def version(self) -> int:
        return self._data.version

    def refresh(self) -> bool:
        """Load the published snapshot if it is newer than the one in use; True if swapped.
        A damaged one raises ``SnapshotError`` and the one in use stays."""
        with self._swap_lock:
            path = current_version_dir(self.root)
            if read_manifest(path).version == self._data.version:
                return False
            self._data = SnapshotData.load(path)  # a single reference swap
            return True

    def user(self, user_id: str) -> UserFeatures | None:
        """Attributes and last-N history of a user; None for a user the snapshot lacks."""
        data = self._data
        row = data.user_index.get(user_id)
        hist_row = data.history_index.get(user_id)
        if row is None and hist_row is None:
            return None
        attributes = data.users.row(row, named=True) if row is not None else {USER_ID: user_id}
        attributes.pop(USER_ID, None)
        if hist_row is None:
            return UserFeatures(user_id, attributes, [], [], [])
        start, end = int(data.history_offsets[hist_row]), int(data.history_offsets[hist_row + 1])
        return UserFeatures(user_id, attributes, data.histories["items"][hist_row].to_list(),
                            data.history_ts[start:end].tolist(), data.histories["event_types"][hist_row].to_list())

    def searches(self, user_id: str) -> tuple[list[str], list[datetime]]:
        """The user's recent searches (queries and times, oldest first); empty lists for none."""
        return self._data.searches.get(user_id, ([], []))

    def query_vectors(self, name: str) -> dict[str, np.ndarray]:
        """Query text → vector in set ``name``, for the queries of the users' recent searches."""
        return self._data.query_vectors.get(name, {})

    def seen(self, user_id: str, event_types: list[str] | None = None) -> list[str]:
        """Every item the user had an event with (of ``event_types``; None = any type)."""
        by_type = self._data.seen.get(user_id, {})
        kinds = by_type if event_types is None else [t for t in event_types if t in by_type]
        return sorted({item for kind in kinds for item in by_type[kind]})

    def item(self, item_id: str) -> dict[str, Any] | None:
        """Current features of one item; None if unknown."""
        data = self._data
        row = data.item_index.get(item_id)
        return None if row is None else data.items.row(row, named=True)

    def items(self, item_ids: list[str]) -> pl.DataFrame:
        """Features of several items, in the order asked (unknown ids are left out)."""
        data = self._data
        rows = [data.item_index[i] for i in item_ids if i in data.item_index]
        return data.items[rows]

    def item_vectors(self, name: str) -> ItemVectors:
        """A named vector set; KeyError listing the sets the snapshot has."""
        data = self._data
        try:
            return data.vectors[name]
        except KeyError:
            raise KeyError(f"no item vectors named {name!r}; snapshot has {sorted(data.vectors)}") from None

    def user_segment(self, attributes: dict[str, Any]) -> Segment | None:
        """The narrowest segment of users sharing ``attributes`` that keeps at least
        ``MIN_SEGMENT_USERS`` users; None when no attribute makes one.

        Usable attributes are string columns with at most ``MAX_SEGMENT_VALUES`` distinct
        values; they are tried from the coarsest (fewest distinct values) to the finest, and
        one that would leave too few users is skipped.
        """
        users = self._data.users
        usable = []
        for column, value in attributes.items():
            if value is None or column not in users.columns or users[column].dtype != pl.String:
                continue
            distinct = users[column].n_unique()
            if distinct <= MAX_SEGMENT_VALUES:
                usable.append((distinct, column))
        mask = pl.Series([True] * users.height)
        chosen: list[tuple[str, Any]] = []
        for _, column in sorted(usable):
            narrower = mask & (users[column] == attributes[column])
            if narrower.sum() >= MIN_SEGMENT_USERS:
                mask, chosen = narrower, chosen + [(column, attributes[column])]
        return Segment(tuple(chosen)) if chosen else None

    def segment_popularity(self, segment: Segment) -> SegmentItems:
        """How often each item appears in the (last-N) histories of the segment's users."""
        data = self._data
        members = data.users.filter(*(pl.col(c) == v for c, v in segment.attributes))[USER_ID]
        items = data.histories.filter(pl.col(USER_ID).is_in(members.implode()))["items"].explode().drop_nulls()
        counts = items.value_counts(name="count").sort(["count", "items"], descending=[True, False])
        return SegmentItems(segment, counts["items"].to_list(), counts["count"].to_numpy().astype(np.float64))
