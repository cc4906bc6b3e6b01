"""docs/plugins.md against the code: every hook documented with its exact signature and
docstring, every hook exercised by a test, every public member of the contract classes
documented, the documented examples and every built-in passing ``recengine.testing`` — so
the plugin author's guide and the code cannot drift."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
from pathlib import Path

import pytest
from torch import nn

from recengine import components, hookspecs
from recengine.plugin_manager import PluginManager
from recengine.testing import CHECKED_FAMILIES, check_component, check_plugin

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"
HOOKSPECS = {name: f for name, f in vars(hookspecs).items()
             if inspect.isfunction(f) and getattr(f, f"{hookspecs.PROJECT_NAME}_spec", None) is not None}


def render(spec) -> str:  # type: ignore[no-untyped-def]
    """``def name(arg: annotation, ...) -> return:`` exactly as ``inspect.signature`` sees it."""
    def show(annotation) -> str:  # type: ignore[no-untyped-def]
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    signature = inspect.signature(spec)
    params = ", ".join(f"{p.name}: {show(p.annotation)}" for p in signature.parameters.values())
    return f"def {spec.__name__}({params}) -> {show(signature.return_annotation)}:"


def code_blocks(language: str = "python") -> list[list[str]]:
    text = DOCS.read_text()
    return [block.splitlines() for block in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)]


def test_the_hookspecs_are_found() -> None:
    assert set(HOOKSPECS) >= {"register_encoders", "register_interactors", "register_rankers",
                              "register_domains", "register_commands"}


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_every_hook_is_documented_with_its_exact_signature(name: str) -> None:
    spec = HOOKSPECS[name]
    expected = render(spec)
    docstring = f'    """{inspect.cleandoc(spec.__doc__ or "")}"""'
    for lines in code_blocks():
        if expected in lines:
            following = lines[lines.index(expected) + 1] if lines.index(expected) + 1 < len(lines) else ""
            assert following == docstring, (
                f"docs/plugins.md shows {name}'s signature but not its current docstring; expected the next line "
                f"to be\n{docstring}\ngot\n{following}")
            break
    else:
        raise AssertionError(f"docs/plugins.md has no python code block line\n{expected}\n"
                             f"(the signature of engine/hookspecs.py:{name}); copy it from the hookspec")
    assert re.search(rf"^### {name}$", DOCS.read_text(), flags=re.M), f"docs/plugins.md lacks a '### {name}' section"


def test_docs_describe_no_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"^### (register_\w+)$", DOCS.read_text(), flags=re.M))
    assert documented == set(HOOKSPECS), f"documented but not a hookspec: {sorted(documented - set(HOOKSPECS))}"


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_every_hook_is_implemented_by_some_test(name: str) -> None:
    """Some test under tests/ implements the hook (``def <hook>(``) and so exercises it."""
    implementing = [path.name for path in sorted(TESTS.rglob("*.py"))
                    if path.name != Path(__file__).name and re.search(rf"\bdef {name}\(", path.read_text())]
    assert implementing, f"no test under tests/ implements {name} (def {name}(...)): add one"


def _example_module(marker: str) -> types.ModuleType:
    """The documented python block containing ``marker``, executed as a plugin module."""
    block = next(("\n".join(lines) for lines in code_blocks() if any(marker in line for line in lines)), None)
    assert block is not None, f"no python block in docs/plugins.md contains {marker!r}"
    module = types.ModuleType(f"docs_example_{abs(hash(marker))}")
    exec(compile(block, f"docs/plugins.md ({marker})", "exec"), module.__dict__)  # noqa: S102 - our own docs
    return module


@pytest.mark.parametrize("marker, family, name", [
    ("class SeededShuffle", "rankers", "seeded-shuffle"),
    ("class Cosine", "interactors", "cosine"),
    ("BOOKS = Domain(", "domains", "books"),
])
def test_documented_examples_load_and_keep_the_contracts(marker: str, family: str, name: str) -> None:
    manager = PluginManager()
    manager.load_builtins()
    info = manager.load_plugin(_example_module(marker), name=f"docs-{name}")
    assert info.error is None and info.components == {family: [name]}
    check_plugin(manager, f"docs-{name}")


# ---------------------------------------------------------------------------------------
# recengine.testing over every registered built-in (the checks plugin authors are told to run)
# ---------------------------------------------------------------------------------------

BUILTINS = PluginManager()
BUILTINS.load_builtins()
EXTRA_PARAMS: dict[tuple[str, str], list[dict]] = {
    ("encoders", "dense"): [{"use_history": True}, {"hidden": [8], "dropout": 0.1, "use_features": False}],
    ("encoders", "transformer"): [{"layers": 1, "heads": 4}],
    ("interactors", "attention"): [{"project": False, "include_pooled": False}],
    ("rankers", "exclude-seen"): [{"event_types": ["purchase"]}],
    ("rankers", "diversity"): [{"field": "category", "max_per_value": 2}],
    ("rankers", "freshness"): [{"max_age_hours": 60, "drop_undated": True}],
}
COMPONENTS = [(family, name) for family in CHECKED_FAMILIES for name in BUILTINS.names(family)]


def test_every_builtin_family_is_checked() -> None:
    assert {family for family, _ in COMPONENTS} == set(CHECKED_FAMILIES)
    assert ("encoders", "transformer") in COMPONENTS and ("rankers", "topk") in COMPONENTS


@pytest.mark.parametrize("family, name", COMPONENTS, ids=[f"{f}:{n}" for f, n in COMPONENTS])
def test_builtin_passes_engine_testing(family: str, name: str) -> None:
    component = BUILTINS.get(family, name)
    plugin = BUILTINS.registry.components[family][name][1]
    for params in [None, *EXTRA_PARAMS.get((family, name), [])]:
        check_component(family, component, name=name, plugin=plugin, params=params)


# ---------------------------------------------------------------------------------------
# the component contract classes: every public field and member is documented
# ---------------------------------------------------------------------------------------

CONTRACT_SECTIONS = {
    "Encoders": [components.Encoder, components.EncoderContext, components.FeatureSpec, components.Encoded],
    "Interactors": [components.Interactor, components.InteractorContext],
    "Rankers": [components.Ranker, components.Candidates, components.RankContext, components.Catalog,
                components.SegmentPopularity],
}
CONTRACT = [(section, cls) for section, classes in CONTRACT_SECTIONS.items() for cls in classes]
BASES = (nn.Module, object)


def public_members(cls: type) -> list[str]:
    """Dataclass fields and the names a class defines itself (not inherited from torch or object)."""
    names = ([f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
             if dataclasses.is_dataclass(cls) else [])
    names += [name for name in vars(cls) if not name.startswith("_") and name not in names]
    return sorted(set(names) - {name for base in BASES for name in vars(base)})


def section(title: str) -> str:
    match = re.search(rf"^### {title}$(.*?)(?=^##)", DOCS.read_text(), flags=re.M | re.S)
    assert match, f"docs/plugins.md lacks a '### {title}' section"
    return match.group(1)


def test_the_contract_classes_have_public_members() -> None:
    assert "seen" in public_members(components.RankContext)
    assert {"fit", "required_vectors", "embed_texts", "embeds_text", "roles"} <= set(public_members(components.Encoder))


@pytest.mark.parametrize("title, cls", CONTRACT, ids=[cls.__name__ for _, cls in CONTRACT])
def test_every_public_member_of_the_contract_classes_is_documented(title: str, cls: type) -> None:
    text = section(title)
    spans = re.findall(r"`([^`]+)`", text)
    missing = [name for name in public_members(cls) if not any(re.search(rf"\b{name}\b", span) for span in spans)]
    assert not missing, (f"docs/plugins.md '### {title}' does not document {cls.__name__}."
                         f"{', '.join(missing)} (name each in `backticks` with what it means)")
