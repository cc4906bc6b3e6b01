"""Plugin loading: built-ins through the public hooks, errors reported, unknown names listed."""

from __future__ import annotations

import inspect
import types

import pytest

from recengine import hookimpl, hookspecs
from recengine.plugin_manager import PluginManager, UnknownComponentError, get_plugin_manager


@pytest.fixture
def manager() -> PluginManager:
    pm = PluginManager()
    pm.load_builtins()
    return pm


def test_builtins_register_every_family(manager: PluginManager) -> None:
    assert manager.names("encoders") == ["dense", "ease", "text", "transformer"]
    assert manager.names("interactors") == ["attention", "dot"]
    assert manager.names("rankers") == ["diversity", "exclude-seen", "freshness", "friends-of-friends", "popularity-fallback", "topk"]
    assert manager.names("domains") == ["ecommerce", "news", "social", "video"]
    assert all(info.error is None for info in manager.plugins)


def test_unknown_component_lists_known_names(manager: PluginManager) -> None:
    with pytest.raises(UnknownComponentError, match="unknown encoder 'gru'; known encoders: dense, ease, text, transformer"):
        manager.get("encoders", "gru")


def test_hookspecs_are_documented_and_typed() -> None:
    specs = [f for name, f in vars(hookspecs).items() if name.startswith("register_")]
    assert {f.__name__ for f in specs} == {
        "register_encoders", "register_interactors", "register_rankers", "register_domains", "register_commands"}
    for spec in specs:
        assert spec.__doc__ and spec.__doc__.strip()
        signature = inspect.signature(spec)
        assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values())


def test_broken_plugins_are_reported_not_fatal(manager: PluginManager) -> None:
    raising = types.ModuleType("raising_plugin")

    @hookimpl
    def register_rankers(register):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom in register")

    raising.register_rankers = register_rankers
    duplicate = types.ModuleType("duplicate_plugin")

    @hookimpl
    def register_encoders(register):  # type: ignore[no-untyped-def]
        register("dense", object)

    duplicate.register_encoders = register_encoders
    first = manager.load_plugin(raising)
    second = manager.load_plugin(duplicate)
    assert "RuntimeError: boom in register" in first.error
    assert "encoder 'dense' is already registered by recengine.plugins.encoders.dense" in second.error
    assert manager.names("encoders") == ["dense", "ease", "text", "transformer"]  # the built-ins still work


def test_plugin_manager_is_lazy_and_shared() -> None:
    assert get_plugin_manager() is get_plugin_manager()
