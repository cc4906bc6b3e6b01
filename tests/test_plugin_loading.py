"""Third-party plugins through real entry points: discovery, RECENGINE_LOAD_PLUGINS, failures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recengine.cli import cli
from recengine.plugin_manager import PluginManager, allowed_plugins, reset_plugin_manager

PLUGIN_SOURCE = '''
from recengine import hookimpl
from recengine.components import Candidates, Ranker


class Reverse(Ranker):
    def rank(self, candidates, context):
        return candidates.take(list(range(len(candidates)))[::-1])


@hookimpl
def register_rankers(register):
    register("reverse", Reverse)
'''


def _install_fake_distribution(root: Path, name: str, module: str, source: str) -> None:
    """A minimal installed distribution (dist-info with an entry point) on sys.path."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{name.replace('-', '_')}-1.2.3.dist-info"  # as pip names it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[recengine]\n{module} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _install_fake_distribution(tmp_path, "recengine-reverse", "recengine_reverse", PLUGIN_SOURCE)
    _install_fake_distribution(tmp_path, "recengine-broken", "recengine_broken", "raise ImportError('missing dep x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in ("recengine_reverse", "recengine_broken"):
        sys.modules.pop(module, None)
    reset_plugin_manager()


def _manager(allowed: set[str] | None) -> PluginManager:
    manager = PluginManager()
    manager.load_builtins()
    manager.load_entry_points(allowed)
    return manager


def test_entry_point_plugin_loads_with_version_and_components(site: Path) -> None:
    manager = _manager(None)
    info = {p.name: p for p in manager.plugins}
    assert info["recengine_reverse"].distribution == "recengine-reverse"
    assert info["recengine_reverse"].version == "1.2.3"
    assert info["recengine_reverse"].components == {"rankers": ["reverse"]}
    assert "reverse" in manager.names("rankers")
    assert "ImportError: missing dep x" in info["recengine_broken"].error
    assert "topk" in manager.names("rankers")  # the broken one took nothing down


def test_load_plugins_env_limits_third_party(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECENGINE_LOAD_PLUGINS", "")
    assert allowed_plugins() == set()
    manager = _manager(allowed_plugins())
    assert "reverse" not in manager.names("rankers") and all(p.builtin for p in manager.plugins)
    monkeypatch.setenv("RECENGINE_LOAD_PLUGINS", "recengine-reverse")
    assert "reverse" in _manager(allowed_plugins()).names("rankers")


def test_plugins_command_lists_errors_without_crashing(site: Path) -> None:
    reset_plugin_manager()
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["recengine_reverse"]["version"] == "1.2.3"
    assert rows["recengine_broken"]["error"].startswith("ImportError")
    assert rows["recengine.plugins.encoders.transformer"]["components"] == {"encoders": ["transformer"]}
    table = CliRunner().invoke(cli, ["plugins"])
    assert table.exit_code == 0 and "failed" in table.output
