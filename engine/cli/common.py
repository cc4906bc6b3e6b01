"""Shared CLI pieces: the --store option, JSON output, and turning errors into messages."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

store_option = click.option(
    "--store", "store_path", envvar="RECENGINE_STORE", default="recengine.duckdb", show_default=True,
    type=click.Path(dir_okay=False), help="DuckDB file of the feature store (or set RECENGINE_STORE).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Show recengine's own errors (``EngineError``: bad config, input or request, unknown
    names, an unreachable cluster; ``StoreError``: bad files, a locked store) as one clear
    line on stderr and exit 1. Anything else is a bug and keeps its traceback, so a stray
    ``ValueError`` or ``KeyError`` is never passed off as the user's mistake."""
    from recengine.errors import EngineError
    from recengine.feature_store.errors import StoreError

    try:
        yield
    except (StoreError, EngineError) as exc:
        err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
