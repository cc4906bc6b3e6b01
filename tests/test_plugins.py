"""Plugin loading: built-ins through the public hooks, errors reported, unknown names listed."""

from __future__ import annotations

import inspect
import types

import pytest

from recengine import ConfigError, Ranker, hookimpl, hookspecs
from recengine.config import ComponentRef
from recengine.plugin_manager import PluginManager, UnknownComponentError, get_plugin_manager
from recengine.plugins.encoders.dense import DenseEncoder


@pytest.fixture
def manager() -> PluginManager:
    pm = PluginManager()
    pm.load_builtins()
    return pm


def test_builtins_register_every_family(manager: PluginManager) -> None:
    assert manager.names("encoders") == ["dense", "ease", "hstu", "text", "text-multilingual", "transformer"]
    assert manager.names("interactors") == ["attention", "dot"]
    assert manager.names("rankers") == [
        "diversity", "exclude-seen", "freshness", "friends-of-friends", "popularity-fallback", "topk",
    ]
    assert manager.names("domains") == ["ecommerce", "news", "social", "video"]
    assert all(info.error is None for info in manager.plugins)


def test_unknown_component_lists_known_names(manager: PluginManager) -> None:
    known = "dense, ease, hstu, text, text-multilingual, transformer"
    with pytest.raises(UnknownComponentError, match=f"unknown encoder 'gru'; known encoders: {known}"):
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
        register("dense-copy", DenseEncoder)
        register("dense", DenseEncoder)

    duplicate.register_encoders = register_encoders
    first = manager.load_plugin(raising)
    second = manager.load_plugin(duplicate)
    assert "RuntimeError: boom in register" in first.error
    assert "encoder 'dense' is already registered by recengine.plugins.encoders.dense" in second.error
    # all or nothing: the name it did own ("dense-copy") is not registered either
    built_ins = ["dense", "ease", "hstu", "text", "text-multilingual", "transformer"]
    assert manager.names("encoders") == built_ins  # the built-ins still work


@pytest.mark.parametrize("family, arguments, expected", [
    ("encoders", ("wide", object), "a subclass of recengine.Encoder"),
    ("rankers", ("boost", lambda config: None), "a subclass of recengine.Ranker"),
    ("interactors", (42, Ranker), "a subclass of recengine.Interactor"),
    ("rankers", ("dense-as-ranker", DenseEncoder), "a subclass of recengine.Ranker"),
])
def test_register_takes_a_name_and_a_component_class(manager: PluginManager, family: str, arguments: tuple,
                                                     expected: str) -> None:
    plugin = types.ModuleType(f"bad_{family}")

    def hook(register):  # type: ignore[no-untyped-def]
        register(*arguments)

    hook.__name__ = f"register_{family}"
    setattr(plugin, hook.__name__, hookimpl(hook))
    info = manager.load_plugin(plugin)
    assert info.error is not None and info.error.startswith("TypeError") and expected in info.error
    assert info.components == {}


def test_register_hooks_are_called_through_pluggy(manager: PluginManager) -> None:
    """pluggy's hook-call monitoring sees each registration call (so tracing and wrappers apply)."""
    calls: list[tuple[str, list[str]]] = []
    manager.pm.add_hookcall_monitoring(
        lambda hook, impls, kwargs: calls.append((hook, [impl.plugin_name for impl in impls])), lambda *_: None)
    plugin = types.ModuleType("traced")

    @hookimpl
    def register_rankers(register):  # type: ignore[no-untyped-def]
        register("traced-topk", Ranker)

    plugin.register_rankers = register_rankers
    info = manager.load_plugin(plugin)
    assert info.components == {"rankers": ["traced-topk"]}
    assert ("register_rankers", ["traced"]) in calls


def test_build_validates_params_and_names_the_component(manager: PluginManager) -> None:
    ranker = manager.build("rankers", ComponentRef(name="diversity", params={"lambda": 0.3}))
    assert type(ranker).__name__ == "Diversity" and ranker.config.lambda_ == 0.3
    with pytest.raises(ConfigError, match=r"ranking.rankers\[1\] \('diversity'\): invalid parameters"):
        manager.build("rankers", ComponentRef(name="diversity", params={"lamda": 0.3}), where="ranking.rankers[1]")
    with pytest.raises(UnknownComponentError):
        manager.build("rankers", ComponentRef(name="no-such-ranker"))


def test_plugin_manager_is_lazy_and_shared() -> None:
    assert get_plugin_manager() is get_plugin_manager()
