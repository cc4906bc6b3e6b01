"""Versioned Parquet snapshots of a store: exported for training, published for serving.

Layout under the snapshot root (default: ``<store>.snapshots/`` beside the DuckDB file)::

    v000003/  users.parquet items.parquet events.parquet item_vectors.parquet
              histories.parquet manifest.json
    CURRENT   the published version's directory name (replaced atomically)

A version directory is written under a temporary name and renamed when complete, so a
reader never sees half a snapshot.

The module works on what it is handed (a DuckDB connection, a schema, a directory), never on
the store object: the store calls :func:`export_snapshot` with its connection inside one of
its transactions, so this module needs nothing of the store's internals.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import MISSING, asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from recengine.feature_store.db import run, single_row
from recengine.feature_store.errors import SnapshotError, StoreError
from recengine.feature_store.schema import StoreSchema
from recengine.feature_store.searches import recent_searches_sql

CURRENT = "CURRENT"
DEFAULT_HISTORY = 200
TABLES = ("users", "items", "events", "item_vectors", "histories", "seen", "searches", "query_vectors")


@dataclass
class SnapshotInfo:
    """Where a snapshot lies and what it holds."""

    version: int
    path: str
    created_at: str
    counts: dict[str, int]
    history: int
    schema: dict[str, Any]
    live_seq: int = 0  # the live log's last sequence number the snapshot holds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_root(store_path: str | Path) -> Path:
    """``<store>.snapshots/`` beside the store's DuckDB file."""
    path = Path(store_path)
    return path.with_name(path.stem + ".snapshots")


def version_name(version: int) -> str:
    return f"v{version:06d}"


def export_snapshot(con: duckdb.DuckDBPyConnection, root: str | Path, schema: StoreSchema,
                    history: int = DEFAULT_HISTORY) -> SnapshotInfo:
    """Write a numbered snapshot of every table under ``root`` and bump the store's counter.

    ``con`` must be inside a transaction (the store's ``transaction()``), so that every table
    is read from one state and, should the caller roll back, the counter is unchanged.
    On failure the half-written version directory is removed.
    """
    if history < 1:
        raise ValueError(f"history must be >= 1, got {history}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging: Path | None = None
    try:
        # above both the store's counter and any version already under root: a store
        # re-created in place must not reuse (and collide with) a published version
        counter = int(single_row(con, "SELECT value FROM store_meta WHERE key = 'snapshot_version'")[0])
        version = max(counter, latest_version(root)) + 1
        final = root / version_name(version)
        staging = root / f".{version_name(version)}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        queries = {
            "users": "SELECT * FROM users ORDER BY user_id, valid_from",
            "items": "SELECT * FROM items ORDER BY item_id, valid_from",
            "events": "SELECT user_id, item_id, event_type, value, ts, seq FROM events ORDER BY user_id, ts, seq",
            "item_vectors": "SELECT item_id, name, vector FROM item_vectors ORDER BY name, item_id",
            "histories": f"""
                SELECT user_id, list(item_id ORDER BY ts, seq) AS items,
                       list(ts ORDER BY ts, seq) AS ts, list(event_type ORDER BY ts, seq) AS event_types
                FROM (SELECT * FROM events QUALIFY row_number() OVER
                      (PARTITION BY user_id ORDER BY ts DESC, seq DESC) <= {int(history)})
                GROUP BY user_id ORDER BY user_id""",
            # every item each user had an event with, by type (beyond the last-N history),
            # so "never show what was bought" holds for a user's whole past
            "seen": """
                SELECT user_id, event_type, list(DISTINCT item_id) AS items
                FROM events GROUP BY user_id, event_type ORDER BY user_id, event_type""",
            # each user's recent searches, and the vectors of the queries among them, per vector set
            "searches": recent_searches_sql(history),
            "query_vectors": f"""
                SELECT name, query, vector FROM query_vectors
                WHERE query IN (SELECT unnest(queries) FROM ({recent_searches_sql(history)}))
                ORDER BY name, query""",
        }
        counts = {}
        for table, query in queries.items():
            target = staging / f"{table}.parquet"
            run(con, f"COPY ({query}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
            counts[table] = int(single_row(con, f"SELECT count(*) FROM '{target}'")[0])
        live = single_row(con, "SELECT coalesce(max(value::BIGINT), 0) FROM store_meta WHERE key = 'live_seq'")[0]
        info = SnapshotInfo(
            version=version, path=str(final), created_at=datetime.now(UTC).isoformat(),
            counts=counts, history=history, schema=schema.model_dump(mode="json"), live_seq=int(live),
        )
        (staging / "manifest.json").write_text(json.dumps(info.to_dict(), indent=2))
        run(con, "UPDATE store_meta SET value = ? WHERE key = 'snapshot_version'", [str(version)])
        os.replace(staging, final)  # last: the version appears whole, or not at all
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def latest_version(root: str | Path) -> int:
    """The highest snapshot version under ``root`` (0 when there is none)."""
    versions = [int(p.name[1:]) for p in Path(root).glob("v*") if p.is_dir() and p.name[1:].isdigit()]
    return max(versions, default=0)


def set_current(root: str | Path, version: int) -> None:
    """Point ``CURRENT`` at a version, atomically (write a temp file, then rename)."""
    root = Path(root)
    if not (root / version_name(version) / "manifest.json").exists():
        raise StoreError(f"snapshot {version_name(version)} does not exist under {root}")
    temp = root / f".{CURRENT}.tmp-{os.getpid()}"
    temp.write_text(version_name(version) + "\n")
    os.replace(temp, root / CURRENT)


def current_version_dir(root: str | Path) -> Path:
    """The published snapshot directory, or a clear error if none was published or
    ``CURRENT`` names a version that is not there."""
    root = Path(root)
    pointer = root / CURRENT
    if not pointer.exists():
        raise StoreError(f"no published snapshot under {root}; run `recengine store publish` first")
    try:
        name = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(str(root), CURRENT, f"cannot be read ({exc})") from None
    if not (name.startswith("v") and name[1:].isdigit()):
        raise SnapshotError(str(root), CURRENT, f"holds {name[:40]!r}, not a version name like {version_name(1)!r}")
    if not (root / name).is_dir():
        raise SnapshotError(str(root), CURRENT, f"names {name}, which does not exist under {root}; "
                                                f"publish one again (`recengine store publish`)")
    return root / name


def read_manifest(path: str | Path) -> SnapshotInfo:
    """A snapshot's manifest, checked for the fields and types :class:`SnapshotInfo` needs
    (fields it does not know, from a newer writer, are ignored)."""
    path = Path(path)
    manifest = path / "manifest.json"
    if not manifest.is_file():
        raise SnapshotError(str(path), manifest.name, "is missing (not a snapshot, or a half-written one)")
    try:
        raw = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise SnapshotError(str(path), manifest.name, f"is not readable JSON ({exc})") from None
    names = [f.name for f in fields(SnapshotInfo)]
    required = [f.name for f in fields(SnapshotInfo) if f.default is MISSING]
    missing = [name for name in required if name not in raw] if isinstance(raw, dict) else required
    if missing:
        raise SnapshotError(str(path), manifest.name, f"lacks field(s) {missing}")
    counts = raw["counts"]
    if not (isinstance(raw["version"], int) and isinstance(counts, dict)
            and all(isinstance(n, int) for n in counts.values())):
        raise SnapshotError(str(path), manifest.name, "has a non-integer version or table counts")
    if not isinstance(raw.get("live_seq", 0), int):
        raise SnapshotError(str(path), manifest.name, "has a non-integer live_seq")
    return SnapshotInfo(**{name: raw[name] for name in names if name in raw})


def list_snapshots(root: str | Path) -> list[SnapshotInfo]:
    root = Path(root)
    if not root.exists():
        return []
    return [read_manifest(p) for p in sorted(root.glob("v[0-9]*")) if (p / "manifest.json").exists()]
