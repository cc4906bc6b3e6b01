"""``recengine keys``: create, list and revoke the API keys of a project's write endpoints."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from recengine.cli.common import console, err_console, friendly_errors, json_option, print_json
from recengine.project import DEFAULT_PROJECT

project_option = click.option("--project", default=DEFAULT_PROJECT, show_default=True,
                              type=click.Path(file_okay=False), help="Project directory (holds api-keys.json).")
NOT_SHOWN_AGAIN = "Store this key now: it is not shown again (the server keeps only its hash)."


def _known_domain(domain: str) -> str:
    """``domain`` if a loaded plugin registered it; an error listing the known domains otherwise."""
    from recengine.errors import UnknownComponentError
    from recengine.plugin_manager import get_plugin_manager

    known = get_plugin_manager().names("domains")
    if domain not in known:
        raise UnknownComponentError("domains", domain, known)
    return domain


@click.group()
def keys() -> None:
    """API keys for the write endpoints of served domains (`Authorization: Bearer <key>`)."""


@keys.command()
@click.option("--domain", required=True, help="Domain the key may write to.")
@click.option("--name", default=None, help="A label saying who or what uses the key.")
@project_option
@json_option
def create(domain: str, name: str | None, project: str, as_json: bool) -> None:
    """Create a key and print its secret, this once."""
    from recengine.api_keys import ApiKeys

    with friendly_errors():
        info, secret = ApiKeys.of_project(project).create(_known_domain(domain), name)
    if as_json:
        print_json({**info.model_dump(), "secret": secret})
        err_console.print(f"[yellow]{NOT_SHOWN_AGAIN}[/]", highlight=False)
        return
    label = f" ({escape(info.name)})" if info.name else ""
    console.print(f"Created API key [bold]{info.key_id}[/]{label} for domain [bold]{escape(info.domain)}[/]:")
    click.echo(secret)  # plain, on a line of its own: no markup, no wrapping
    console.print(f"[yellow]{NOT_SHOWN_AGAIN}[/] Send it as `Authorization: Bearer <key>`.", highlight=False)


@keys.command("list")
@click.option("--domain", default=None, help="Only this domain's keys.")
@project_option
@json_option
def list_keys(domain: str | None, project: str, as_json: bool) -> None:
    """Every key with its domain, name and dates (never a secret or its hash)."""
    from recengine.api_keys import ApiKeys

    store = ApiKeys.of_project(project)
    with friendly_errors():
        rows = store.list(domain)
    if as_json:
        print_json([row.model_dump() for row in rows])
        return
    table = Table(title=f"API keys in {store.path}")
    for column in ("id", "domain", "name", "created", "revoked"):
        table.add_column(column, no_wrap=column == "id")
    for row in rows:
        table.add_row(row.key_id, escape(row.domain), escape(row.name or "-"), row.created_at,
                      row.revoked_at or "-")
    console.print(table)


@keys.command()
@click.argument("key_id")
@project_option
def revoke(key_id: str, project: str) -> None:
    """Revoke KEY_ID: running servers refuse it from their next request on."""
    from recengine.api_keys import ApiKeys

    with friendly_errors():
        info = ApiKeys.of_project(project).revoke(key_id)
    console.print(f"Revoked API key [bold]{info.key_id}[/] of domain [bold]{escape(info.domain)}[/] "
                  f"(at {info.revoked_at}).")
