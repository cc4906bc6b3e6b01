"""The hooks a recengine plugin implements (pluggy project ``recengine``).

Every hook receives a ``register`` callable (or the CLI group) and adds components to it:
``register(name, SomeClass)`` with a subclass of the family's base class (the engine builds
it from the pipeline config), or ``register(domain)``. Built-in components in ``plugins/``
use exactly these hooks, as a third-party package would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from recengine.components import Encoder, Interactor, Ranker
    from recengine.domain import Domain

PROJECT_NAME = "recengine"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_encoders(register: Callable[[str, type[Encoder]], None]) -> None:
    """Register encoders: ``register(name, EncoderClass)``; the engine builds ``EncoderClass(context, config)``."""


@hookspec
def register_interactors(register: Callable[[str, type[Interactor]], None]) -> None:
    """Register interactors: ``register(name, InteractorClass)`` scoring users against items."""


@hookspec
def register_rankers(register: Callable[[str, type[Ranker]], None]) -> None:
    """Register rankers: ``register(name, RankerClass)``; rankers filter, reorder and explain."""


@hookspec
def register_domains(register: Callable[[Domain], None]) -> None:
    """Register domain presets: ``register(domain)`` with a ``recengine.Domain``."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``recengine`` click group."""
