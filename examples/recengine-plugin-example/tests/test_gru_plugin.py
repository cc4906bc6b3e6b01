"""The plugin as recengine sees it: hooks, registry, contract checks and ``gru-info``."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner

import recengine_gru
from recengine.plugin_manager import PluginManager
from recengine.testing import check_plugin


def manager() -> PluginManager:
    pm = PluginManager()
    pm.load_builtins()
    pm.load_plugin(recengine_gru, name="recengine_gru")
    return pm


def test_registers_its_components_beside_the_builtins() -> None:
    pm = manager()
    info = pm.plugins[-1]
    assert info.error is None and info.components == {"encoders": ["gru"], "rankers": ["boost-rule"]}
    assert {"gru", "transformer", "dense"} <= set(pm.names("encoders"))
    assert pm.get("rankers", "boost-rule") is recengine_gru.BoostRule


def test_everything_it_registers_passes_the_contract_checks() -> None:
    results = check_plugin(manager(), "recengine_gru")
    assert [(r.family, r.name, r.ok) for r in results] == [("encoders", "gru", True), ("rankers", "boost-rule", True)]


def test_gru_info_command() -> None:
    @click.group()
    def cli() -> None:
        pass

    recengine_gru.register_commands(cli=cli)
    result = CliRunner().invoke(cli, ["gru-info", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["plugin"] == "recengine_gru" and info["version"] == recengine_gru.__version__
    assert info["components"]["encoders"]["gru"]["params"]["layers"]["default"] == 1
    assert "user_attribute" in info["components"]["rankers"]["boost-rule"]["params"]
    text = CliRunner().invoke(cli, ["gru-info"])
    assert text.exit_code == 0 and "encoder gru" in text.output and "ranker boost-rule" in text.output
