"""Loads built-in and third-party plugins (lazily, once) and keeps the component registry.

Built-ins are the modules in ``DEFAULT_PLUGINS``; third-party packages are found through the
``recengine`` entry-point group. ``RECENGINE_LOAD_PLUGINS`` (a comma list of entry-point or
distribution names; empty means none) limits which third-party plugins load. A plugin that
fails to import or to register is recorded with its error and skipped, never fatal.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as metadata
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import ValidationError

from recengine import hookspecs
from recengine.errors import ConfigError, DuplicateComponentError, UnknownComponentError

if TYPE_CHECKING:  # recengine.domain needs polars; the training core must import without it
    from recengine.components import ComponentConfig
    from recengine.config import ComponentRef
    from recengine.domain import Domain

__all__ = ["DuplicateComponentError", "PluginInfo", "PluginManager", "UnknownComponentError",
           "get_plugin_manager", "reset_plugin_manager"]

ENTRY_POINT_GROUP = "recengine"
FAMILIES = ("encoders", "interactors", "rankers", "domains")

DEFAULT_PLUGINS: tuple[str, ...] = (
    "recengine.plugins.encoders.dense",
    "recengine.plugins.encoders.transformer",
    "recengine.plugins.encoders.hstu",
    "recengine.plugins.encoders.ease",
    "recengine.plugins.encoders.text",
    "recengine.plugins.encoders.text_multilingual",
    "recengine.plugins.interactors.dot",
    "recengine.plugins.interactors.attention",
    "recengine.plugins.domains.ecommerce",
    "recengine.plugins.domains.news",
    "recengine.plugins.domains.video",
    "recengine.plugins.domains.social",
    "recengine.plugins.rankers.filters",
    "recengine.plugins.rankers.diversity",
    "recengine.plugins.rankers.freshness",
    "recengine.plugins.rankers.popularity",
    "recengine.plugins.rankers.graph",
)


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``recengine plugins`` shows it."""

    name: str
    builtin: bool
    distribution: str | None = None
    version: str | None = None
    components: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "builtin": self.builtin,
            "distribution": self.distribution,
            "version": self.version,
            "components": self.components,
            "error": self.error,
        }


@dataclass
class Registry:
    """Registered components by family: ``{family: {name: (component class or Domain, plugin)}}``."""

    components: dict[str, dict[str, tuple[Any, str]]] = field(
        default_factory=lambda: {family: {} for family in FAMILIES}
    )

    def get(self, family: str, name: str) -> Any:
        try:
            return self.components[family][name][0]
        except KeyError:
            raise UnknownComponentError(family, name, self.names(family)) from None

    def names(self, family: str) -> list[str]:
        return sorted(self.components[family])


class PluginManager:
    """The pluggy manager plus the registry it fills; build one with :func:`get_plugin_manager`.

    Every hook is called through pluggy, once per plugin (``subset_hook_caller`` restricted
    to that plugin), so a plugin's ``tryfirst``/``trylast`` and wrapper implementations, and
    pluggy's tracing and call monitoring, behave as pluggy users expect. Plugins are called
    one at a time, in load order (built-ins, then entry points by distribution and name),
    rather than in one call across plugins, because registration is all or nothing per
    plugin: a plugin whose hook raises, or that claims a name another plugin owns, is
    recorded as failed with none of its components, and the others keep theirs.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: list[PluginInfo] = []

    # -- loading -----------------------------------------------------------------------
    def load_builtins(self, modules: tuple[str, ...] = DEFAULT_PLUGINS) -> None:
        for module_name in modules:
            info = PluginInfo(name=module_name, builtin=True, distribution="recengine",
                              version=_version("recengine"))
            self._load(info, functools.partial(importlib.import_module, module_name))

    def load_entry_points(self, allowed: set[str] | None) -> None:
        # a stable order (distribution, then entry point name), so which of two plugins
        # claiming one name wins never depends on the file system's listing order
        found = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP),
                       key=lambda ep: ((ep.dist.metadata["Name"] or "").lower() if ep.dist else "", ep.name))
        for entry_point in found:
            dist = entry_point.dist
            dist_name = dist.metadata["Name"] if dist is not None else None
            if allowed is not None and entry_point.name not in allowed and dist_name not in allowed:
                continue
            info = PluginInfo(name=entry_point.name, builtin=False, distribution=dist_name,
                              version=dist.version if dist is not None else None)
            self._load(info, entry_point.load)

    def load_plugin(self, plugin: Any, name: str | None = None) -> PluginInfo:
        """Register an already-imported plugin object (module or class instance); for tests."""
        info = PluginInfo(name=name if name else getattr(plugin, "__name__", repr(plugin)), builtin=False)
        self._load(info, lambda: plugin)
        return info

    def _load(self, info: PluginInfo, load: Callable[[], Any]) -> None:
        self.plugins.append(info)
        try:
            plugin = load()
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # a broken plugin must not take the others down
            info.error = _describe(exc)
            return
        try:
            info.components = self._collect(plugin, info.name)
        except Exception as exc:
            info.error = _describe(exc)
            self.pm.unregister(plugin)

    def _hook(self, hook_name: str, plugin: Any) -> Any:
        """``hook_name`` as pluggy calls it, restricted to ``plugin``'s implementations."""
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        return self.pm.subset_hook_caller(hook_name, remove_plugins=others)

    def _collect(self, plugin: Any, plugin_name: str) -> dict[str, list[str]]:
        """Call this plugin's register hooks and add what it registers to the registry."""
        staged: dict[str, dict[str, Any]] = {family: {} for family in FAMILIES}

        def registrar(family: str) -> Callable[..., None]:
            def register(name_or_domain: Any, component: Any = None) -> None:
                name, value = _registration(family, name_or_domain, component)
                owner = self.registry.components[family].get(name)
                if owner is not None or name in staged[family]:
                    holder = owner[1] if owner else plugin_name
                    raise DuplicateComponentError(
                        f"{family.rstrip('s')} {name!r} is already registered by {holder}"
                    )
                staged[family][name] = value
            return register

        for family in FAMILIES:
            self._hook(f"register_{family}", plugin)(register=registrar(family))
        for family, entries in staged.items():
            for name, value in entries.items():
                self.registry.components[family][name] = (value, plugin_name)
        return {family: sorted(entries) for family, entries in staged.items() if entries}

    # -- lookups and building -------------------------------------------------------------
    def get(self, family: str, name: str) -> Any:
        return self.registry.get(family, name)

    def names(self, family: str) -> list[str]:
        return self.registry.names(family)

    def domain(self, name: str) -> Domain:
        return self.registry.get("domains", name)

    def component_config(self, family: str, ref: ComponentRef, where: str | None = None) -> ComponentConfig:
        """``ref.params`` validated against its component's ``Config``; a ``ConfigError``
        naming the component (and ``where`` it sits in the pipeline config) otherwise."""
        component = self.get(family, ref.name)
        try:
            return component.Config(**ref.params)
        except ValidationError as exc:
            label = f"{where} ({ref.name!r})" if where else f"{family.rstrip('s')} {ref.name!r}"
            raise ConfigError(f"{label}: invalid parameters:\n{exc}") from None

    def build(self, family: str, ref: ComponentRef, *context: Any, where: str | None = None) -> Any:
        """The one place a component is built from its config reference: encoders and
        interactors as ``Class(context, config)``, rankers as ``Class(config)``."""
        component = self.get(family, ref.name)
        return component(*context, self.component_config(family, ref, where))

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its CLI commands; a failing plugin is recorded, not raised."""
        for info in self.plugins:
            plugin = self.pm.get_plugin(info.name)
            if plugin is None or info.error:
                continue
            try:
                self._hook("register_commands", plugin)(cli=cli)
            except Exception as exc:
                info.error = _describe(exc)


def _registration(family: str, name_or_domain: Any, component: Any) -> tuple[str, Any]:
    """Check one ``register(...)`` call's arguments: ``(name, class)`` for component
    families, ``(domain)`` for domains; a ``TypeError`` saying what was expected otherwise."""
    if family == "domains":
        from recengine.domain import Domain

        if not isinstance(name_or_domain, Domain) or component is not None:
            raise TypeError(f"register_domains expects register(domain) with a recengine.Domain, "
                            f"got {type(name_or_domain).__name__}")
        return name_or_domain.name, name_or_domain
    from recengine.components import BASE_CLASSES

    base = BASE_CLASSES[family]
    if not isinstance(name_or_domain, str) or not (isinstance(component, type) and issubclass(component, base)):
        raise TypeError(f"register_{family} expects register(name: str, component: a subclass of "
                        f"recengine.{base.__name__}), got register({name_or_domain!r}, {component!r})")
    return name_or_domain, component


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def allowed_plugins() -> set[str] | None:
    """Third-party plugins named by ``RECENGINE_LOAD_PLUGINS``; None when it is unset."""
    value = os.environ.get("RECENGINE_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


_lock = threading.Lock()
_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, built on first use (not at import)."""
    global _manager
    with _lock:
        if _manager is None:
            manager = PluginManager()
            manager.load_builtins()
            manager.load_entry_points(allowed_plugins())
            _manager = manager
        return _manager


def reset_plugin_manager() -> None:
    """Forget the loaded plugins so the next use loads them again (tests, env changes)."""
    global _manager
    with _lock:
        _manager = None
