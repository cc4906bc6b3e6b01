"""The hooks a recengine plugin implements (pluggy project ``recengine``).

Every hook receives a ``register`` callable (or the CLI group) and adds components to it.
Built-in components in ``plugins/`` use exactly these hooks, as a third-party package would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from recengine.domain import Domain

PROJECT_NAME = "recengine"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_encoders(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register encoders: ``register(name, factory)``; ``factory(context, config)`` builds the encoder."""


@hookspec
def register_interactors(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register interactors: ``register(name, factory)`` scoring users against items."""


@hookspec
def register_rankers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register rankers: ``register(name, factory)``; rankers filter, reorder and explain."""


@hookspec
def register_domains(register: Callable[["Domain"], None]) -> None:
    """Register domain presets: ``register(domain)`` with a ``recengine.Domain``."""


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add commands to the ``recengine`` click group."""
