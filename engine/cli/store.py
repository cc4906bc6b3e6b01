"""``recengine store``: create, fill, inspect and snapshot the feature store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from recengine.cli.common import console, friendly_errors, json_option, print_json, store_option

if TYPE_CHECKING:  # the feature store is imported by the commands that open one
    from recengine.feature_store.snapshot import SnapshotInfo


@click.group()
def store() -> None:
    """Create, fill, inspect and snapshot the feature store (a DuckDB file)."""


@store.command()
@store_option
@click.option("--domain", default=None, help="Domain whose columns the store accepts (default: open schema).")
def init(store_path: str, domain: str | None) -> None:
    """Create a store file, for a domain preset or with an open schema.

    An open store takes its columns from the first file ingested into each table.
    """
    from recengine.feature_store import FeatureStore

    with friendly_errors():
        schema = None
        if domain:
            from recengine.plugin_manager import get_plugin_manager

            schema = get_plugin_manager().domain(domain).store_schema
        with FeatureStore(store_path, schema=schema) as fs:
            console.print(f"Store [bold]{fs.path}[/] ready (schema: {fs.schema.name}).")


@store.command()
@store_option
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--kind", type=click.Choice(["users", "items", "events"]), default=None,
              help="Table to load into. Without it: RecBole suffix (.inter/.user/.item), else the columns "
                   "(user_id+item_id+ts: events, user_id: users, item_id: items); other files are refused.")
@click.option("--create-missing", is_flag=True,
              help="Create users/items that events name but the store lacks (default: reject).")
@click.option("--allow-new-columns", is_flag=True,
              help="Let a file add columns to a table that already holds rows (default: reject).")
@click.option("--replace", is_flag=True,
              help="Write user/item rows exactly as given; by default empty or missing attributes keep "
                   "their stored values.")
@json_option
def ingest(store_path: str, paths: tuple[str, ...], kind: str | None, create_missing: bool,
           allow_new_columns: bool, replace: bool, as_json: bool) -> None:
    """Load CSV, Parquet or RecBole files (or directories of them) in one transaction.

    Users and items load before events. If any file is bad, nothing is changed and the
    error names the file, line and column. Re-ingesting the same data adds nothing, and a
    user/item row updates only the attributes it gives, unless --replace.
    """
    from recengine.store_access import writable_store

    with friendly_errors():
        with console.status(f"Ingesting {len(paths)} path(s)..."), writable_store(store_path) as fs:
            results = fs.ingest_paths(list(paths), kind, create_missing=create_missing,
                                      allow_new_columns=allow_new_columns, replace=replace)
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    table = Table(title=f"Ingested into {store_path}")
    for column in ("source", "kind", "rows read", "rows added", "created missing"):
        table.add_column(column, justify="left" if column in ("source", "kind") else "right")
    for r in results:
        table.add_row(r.source, r.kind, f"{r.rows_read:,}", f"{r.rows_added:,}", f"{r.created_missing:,}")
    console.print(table)


@store.command()
@store_option
@json_option
def stats(store_path: str, as_json: bool) -> None:
    """Counts of users, items and events, event types, time span and vector sets."""
    from recengine.store_access import writable_store

    with friendly_errors():
        with writable_store(store_path, read_only=True) as fs:
            summary = fs.stats()
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"Store {summary['path']} (schema {summary['schema']})", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("users", "items", "events"):
        table.add_row(key, f"{summary[key]:,}")
    for event_type, count in summary["event_types"].items():
        table.add_row(f"  {event_type}", f"{count:,}")
    table.add_row("first event", str(summary["first_event"]))
    table.add_row("last event", str(summary["last_event"]))
    table.add_row("user columns", ", ".join(f"{k}:{v}" for k, v in summary["user_columns"].items()) or "-")
    table.add_row("item columns", ", ".join(f"{k}:{v}" for k, v in summary["item_columns"].items()) or "-")
    transforms = summary.get("vector_transforms", {})
    table.add_row("vector sets", ", ".join(f"{k} ({v}d{_transform_note(transforms.get(k))})"
                                           for k, v in summary["vector_sets"].items()) or "-")
    table.add_row("snapshot version", str(summary["snapshot_version"]))
    live = summary.get("live", {})
    table.add_row("live batches since publish", f"{live.get('batches_since_publish', 0):,}")
    table.add_row("live records since publish", f"{live.get('records_since_publish', 0):,}")
    table.add_row("writer", f"{live.get('writer', 'not running')}, {live.get('pending_batches', 0)} batch(es) "
                            f"waiting" if live.get("writer") else "not running (nothing is served from this store)")
    console.print(table)


@store.command()
@store_option
@click.option("--out", "root", type=click.Path(file_okay=False), default=None,
              help="Snapshot root directory (default: <store>.snapshots beside the store).")
@click.option("--history", default=200, show_default=True, help="Items kept per user in histories.parquet.")
@json_option
def export(store_path: str, root: str | None, history: int, as_json: bool) -> None:
    """Write a consistent, numbered Parquet snapshot (what training reads)."""
    from recengine.store_access import writable_store

    with friendly_errors():
        with console.status("Exporting snapshot..."), writable_store(store_path) as fs:
            info = fs.export_snapshot(root, history)
    _show_snapshot(info, "Exported", as_json)


@store.command()
@store_option
@click.option("--out", "root", type=click.Path(file_okay=False), default=None,
              help="Snapshot root directory (default: <store>.snapshots beside the store).")
@click.option("--version", "version", type=int, default=None,
              help="Publish an existing snapshot version instead of exporting a new one.")
@click.option("--history", default=200, show_default=True, help="Items kept per user in histories.parquet.")
@json_option
def publish(store_path: str, root: str | None, version: int | None, history: int, as_json: bool) -> None:
    """Export a snapshot and make it the one serving replicas load (atomically)."""
    from recengine.store_access import writable_store

    with friendly_errors():
        with console.status("Publishing snapshot..."), writable_store(store_path) as fs:
            info = fs.publish(root, version, history)
    _show_snapshot(info, "Published", as_json)


def _show_snapshot(info: SnapshotInfo, verb: str, as_json: bool) -> None:
    if as_json:
        print_json(info.to_dict())
        return
    counts = ", ".join(f"{k} {v:,}" for k, v in info.counts.items())
    console.print(f"{verb} snapshot v{info.version} at [bold]{Path(info.path)}[/]: {counts}")


def _transform_note(transform: dict[str, Any] | None) -> str:
    """", whiten of 384d on 1,000 items" for a set with a saved transform, else nothing."""
    if not transform:
        return ""
    return f", {transform['kind']} of {transform['input_dim']}d on {transform['fitted_items']:,} items"
