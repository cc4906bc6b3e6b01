"""``recengine plugins``: what is loaded, from where, and what each plugin registered."""

from __future__ import annotations

import click
from rich.table import Table

from engine.cli.common import console, json_option, print_json


@click.command()
@json_option
def plugins(as_json: bool) -> None:
    """List built-in and installed plugins, their versions and components (and load errors)."""
    from engine.plugin_manager import get_plugin_manager

    manager = get_plugin_manager()
    if as_json:
        print_json([info.to_dict() for info in manager.plugins])
        return
    table = Table(title="recengine plugins")
    for column in ("plugin", "distribution", "version", "components", "status"):
        table.add_column(column)
    for info in manager.plugins:
        components = "; ".join(f"{family}: {', '.join(names)}" for family, names in info.components.items())
        status = f"[red]failed: {info.error}[/]" if info.error else ("built-in" if info.builtin else "loaded")
        table.add_row(info.name, info.distribution or "-", info.version or "-", components or "-", status)
    console.print(table)
