"""recengine-gru: an example third-party recengine plugin.

It registers, through the same hooks as recengine's built-ins:

- the encoder ``gru`` (:class:`recengine_gru.gru.GRUEncoder`): a GRU over the user's history;
- the ranker ``boost-rule`` (:class:`recengine_gru.boost.BoostRule`): promote/demote items by
  an attribute, per config and per the requesting user;
- the command ``recengine gru-info``: this plugin's version, components and parameters.

recengine finds this module through the entry point ``recengine_gru = "recengine_gru"`` in
the group ``recengine`` (see ``pyproject.toml``). The module is named ``recengine_gru``,
never ``plugins``: that name belongs to recengine's built-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from recengine import hookimpl
from recengine_gru.boost import BoostRule, BoostRuleConfig
from recengine_gru.gru import GRUConfig, GRUEncoder

DISTRIBUTION = "recengine-gru"
PLUGIN_NAME = "recengine_gru"  # the entry point's name: what `recengine plugins` shows

try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # imported from a source checkout, not installed
    __version__ = "0.0.0+source"

COMPONENTS = {"encoders": {"gru": GRUEncoder}, "rankers": {"boost-rule": BoostRule}}

__all__ = ["BoostRule", "BoostRuleConfig", "COMPONENTS", "GRUConfig", "GRUEncoder", "__version__",
           "register_commands", "register_encoders", "register_rankers"]


@hookimpl
def register_encoders(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the ``gru`` user encoder."""
    register("gru", GRUEncoder)


@hookimpl
def register_rankers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the ``boost-rule`` ranker."""
    register("boost-rule", BoostRule)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``recengine gru-info``."""
    from recengine_gru.cli import gru_info

    cli.add_command(gru_info)
