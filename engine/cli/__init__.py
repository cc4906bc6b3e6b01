"""The ``recengine`` command line: one click group, commands in one module per area."""

from __future__ import annotations

import click

from recengine.cli import (
    data,
    deploy_cmd,
    ensemble_cmd,
    experiment_cmd,
    keys_cmd,
    model_cmds,
    plugins_cmd,
    quickstart,
    report_cmd,
    retrain_cmd,
    serve_cmd,
    store,
    vectors_cmd,
)
from recengine.cli.common import friendly_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recengine")
def cli() -> None:
    """recengine: a plugin-based recommendation engine.

    Typical flow: `recengine data generate` (or bring CSV/Parquet/RecBole files),
    `recengine store ingest`, then train, evaluate, recommend and serve.
    """


cli.add_command(store.store)
cli.add_command(data.data)
cli.add_command(plugins_cmd.plugins)
cli.add_command(model_cmds.train)
cli.add_command(model_cmds.evaluate)
cli.add_command(report_cmd.compare)
cli.add_command(ensemble_cmd.ensemble)
cli.add_command(model_cmds.recommend)
cli.add_command(model_cmds.models)
cli.add_command(quickstart.quickstart)
cli.add_command(serve_cmd.serve)
cli.add_command(deploy_cmd.deploy)
cli.add_command(vectors_cmd.vectors)
cli.add_command(keys_cmd.keys)
cli.add_command(experiment_cmd.experiment)
cli.add_command(retrain_cmd.retrain)


def _add_plugin_commands() -> None:
    from recengine.plugin_manager import get_plugin_manager

    get_plugin_manager().add_commands(cli)


def main() -> None:
    """Console-script entry point: load plugin commands, then run with friendly errors."""
    with friendly_errors():
        _add_plugin_commands()
    with friendly_errors():
        cli(standalone_mode=True)
