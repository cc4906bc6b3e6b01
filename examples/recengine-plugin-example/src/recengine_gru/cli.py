"""``recengine gru-info``: what this plugin adds, with every parameter and its default."""

from __future__ import annotations

import json
from typing import Any

import click


def describe() -> dict[str, Any]:
    """The plugin's name, version and components with their parameters (JSON-ready)."""
    import recengine_gru

    components: dict[str, dict[str, Any]] = {}
    for family, entries in recengine_gru.COMPONENTS.items():
        for name, component in entries.items():
            fields = component.Config.model_fields
            components.setdefault(family, {})[name] = {
                "class": f"{component.__module__}.{component.__qualname__}",
                "summary": (component.__doc__ or "").strip().splitlines()[0],
                "params": {key: {"default": field.get_default(call_default_factory=True),
                                 "description": field.description or ""} for key, field in fields.items()},
            }
    return {"plugin": recengine_gru.PLUGIN_NAME, "distribution": recengine_gru.DISTRIBUTION,
            "version": recengine_gru.__version__, "components": components}


@click.command(name="gru-info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def gru_info(as_json: bool) -> None:
    """Show the recengine-gru plugin: version, components and their parameters."""
    info = describe()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"{info['distribution']} {info['version']} (plugin {info['plugin']})")
    for family, entries in info["components"].items():
        for name, component in entries.items():
            click.echo(f"\n{family[:-1]} {name}: {component['summary']}")
            for key, param in component["params"].items():
                click.echo(f"  {key} = {param['default']!r}  {param['description']}")
