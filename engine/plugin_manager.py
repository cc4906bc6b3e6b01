"""Loads built-in and third-party plugins (lazily, once) and keeps the component registry.

Built-ins are the modules in ``DEFAULT_PLUGINS``; third-party packages are found through the
``recengine`` entry-point group. ``RECENGINE_LOAD_PLUGINS`` (a comma list of entry-point or
distribution names; empty means none) limits which third-party plugins load. A plugin that
fails to import or to register is recorded with its error and skipped, never fatal.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import threading
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import pluggy

from recengine import hookspecs

if TYPE_CHECKING:  # recengine.domain needs polars; the training core must import without it
    from recengine.domain import Domain

ENTRY_POINT_GROUP = "recengine"
FAMILIES = ("encoders", "interactors", "rankers", "domains")

DEFAULT_PLUGINS: tuple[str, ...] = (
    "recengine.plugins.encoders.dense",
    "recengine.plugins.encoders.transformer",
    "recengine.plugins.encoders.ease",
    "recengine.plugins.encoders.text",
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


class UnknownComponentError(LookupError):
    """A component name that no loaded plugin registered."""

    def __init__(self, family: str, name: str, known: list[str]) -> None:
        self.family = family
        self.name = name
        self.known = known
        singular = family.rstrip("s")
        super().__init__(f"unknown {singular} {name!r}; known {family}: {', '.join(known) or 'none'}")


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
    """Registered components by family: ``{family: {name: (factory_or_domain, plugin)}}``."""

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


class DuplicateComponentError(ValueError):
    """A plugin registered a component name another plugin already owns."""


class PluginManager:
    """The pluggy manager plus the registry it fills; build one with :func:`get_plugin_manager`."""

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
            self._load(info, lambda name=module_name: importlib.import_module(name))

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
        info = PluginInfo(name=name or getattr(plugin, "__name__", repr(plugin)), builtin=False)
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

    def _collect(self, plugin: Any, plugin_name: str) -> dict[str, list[str]]:
        """Call this plugin's register hooks and add what it registers to the registry."""
        staged: dict[str, dict[str, Any]] = {family: {} for family in FAMILIES}

        def registrar(family: str) -> Callable[..., None]:
            def register(name_or_domain: Any, factory: Any = None) -> None:
                if family == "domains":
                    from recengine.domain import Domain

                    if not isinstance(name_or_domain, Domain):
                        raise TypeError(f"register_domains expects an recengine.Domain, got {type(name_or_domain).__name__}")
                    name, value = name_or_domain.name, name_or_domain
                else:
                    if not isinstance(name_or_domain, str) or not callable(factory):
                        raise TypeError(f"register_{family}(register) expects register(name: str, factory: callable)")
                    name, value = name_or_domain, factory
                owner = self.registry.components[family].get(name)
                if owner is not None or name in staged[family]:
                    holder = owner[1] if owner else plugin_name
                    raise DuplicateComponentError(
                        f"{family.rstrip('s')} {name!r} is already registered by {holder}"
                    )
                staged[family][name] = value
            return register

        for family in FAMILIES:
            for impl in getattr(self.pm.hook, f"register_{family}").get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=registrar(family))
        for family, entries in staged.items():
            for name, value in entries.items():
                self.registry.components[family][name] = (value, plugin_name)
        return {family: sorted(entries) for family, entries in staged.items() if entries}

    # -- lookups -----------------------------------------------------------------------
    def get(self, family: str, name: str) -> Any:
        return self.registry.get(family, name)

    def names(self, family: str) -> list[str]:
        return self.registry.names(family)

    def domain(self, name: str) -> Domain:
        return self.registry.get("domains", name)

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its CLI commands; a failing plugin is recorded, not raised."""
        for info in self.plugins:
            plugin = self.pm.get_plugin(info.name)
            for impl in self.pm.hook.register_commands.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                try:
                    impl.function(cli=cli)
                except Exception as exc:
                    info.error = _describe(exc)


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
