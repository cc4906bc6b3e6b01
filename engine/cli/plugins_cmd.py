"""``recengine plugins``: what is loaded, from where, and what each plugin registered;
``plugins install | uninstall`` manage plugin packages in recengine's own environment;
``plugins check`` runs the component contract checks (``recengine.testing``) on plugins."""

from __future__ import annotations

import importlib.metadata as metadata
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from recengine.cli.common import console, json_option, print_json

ENTRY_POINT_GROUP = "recengine"


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List built-in and installed plugins, their versions and components (and load errors).

    `recengine plugins install NAME_OR_PATH` and `recengine plugins uninstall NAME` manage
    plugin packages in recengine's own environment; `recengine plugins check` runs the
    component contract checks on them. RECENGINE_LOAD_PLUGINS (a comma list; empty = none)
    limits which installed plugins load.
    """
    if ctx.invoked_subcommand is not None:
        return
    from recengine.plugin_manager import get_plugin_manager

    manager = get_plugin_manager()
    if as_json:
        print_json([info.to_dict() for info in manager.plugins])
        return
    table = Table(title="recengine plugins")
    for column in ("plugin", "distribution", "version", "components", "status"):
        table.add_column(column)
    for info in manager.plugins:
        components = "; ".join(f"{family}: {', '.join(names)}" for family, names in info.components.items())
        status = f"[red]failed: {escape(info.error)}[/]" if info.error else ("built-in" if info.builtin else "loaded")
        table.add_row(info.name, info.distribution or "-", info.version or "-", components or "-", status)
    console.print(table)


# ---------------------------------------------------------------------------------------
# install / uninstall (pip in recengine's own interpreter, as simonw/llm does)
# ---------------------------------------------------------------------------------------


def default_constraints() -> Path | None:
    """recengine's ``constraints.txt`` (the repository root of an editable install), if any."""
    import recengine

    path = Path(recengine.__file__).resolve().parents[1] / "constraints.txt"
    return path if path.is_file() else None


def pip_command(*args: str) -> list[str]:
    """``python -m pip ARGS`` with the interpreter recengine runs on (its own environment)."""
    return [sys.executable, "-m", "pip", *args]


def run_pip(command: list[str], what: str) -> None:
    """Run pip (its output goes straight to the terminal); a failure is a clear error, exit 1."""
    shown = " ".join(shlex.quote(part) for part in command)
    try:
        returncode = subprocess.run(command, check=False).returncode
    except OSError as exc:
        raise click.ClickException(f"could not run pip ({exc}); command: {shown}") from None
    if returncode != 0:
        raise click.ClickException(
            f"{what} failed: pip exited with status {returncode} (its messages are above); "
            f"command: {shown}")


@plugins.command()
@click.argument("packages", nargs=-1)
@click.option("-e", "--editable", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Install a local project in editable (development) mode; repeatable.")
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade the packages to their newest allowed version.")
@click.option("--force-reinstall", is_flag=True, help="Reinstall even if already up to date.")
@click.option("--no-deps", is_flag=True, help="Do not install the packages' dependencies.")
@click.option("--no-build-isolation", is_flag=True,
              help="Build local projects with the installed setuptools (works offline).")
@click.option("--constraints", "constraints_path", type=click.Path(exists=True, dir_okay=False),
              help="pip constraints file; default: recengine's constraints.txt when it has one.")
@click.option("--no-constraints", is_flag=True, help="Do not pass any constraints file to pip.")
def install(packages: tuple[str, ...], editable: tuple[str, ...], upgrade: bool, force_reinstall: bool,
            no_deps: bool, no_build_isolation: bool, constraints_path: str | None, no_constraints: bool) -> None:
    """Install plugin packages (PyPI names, local paths, URLs) into recengine's environment.

    Runs `python -m pip install` with the interpreter recengine itself runs on, through
    recengine's constraints.txt when there is one, so pinned packages (torch) stay at their
    tested versions. Example: `recengine plugins install ./examples/recengine-plugin-example`.
    """
    if not packages and not editable:
        raise click.UsageError("name at least one package or path to install (or --editable PATH)")
    if any(_normalise(p) == "recengine" for p in packages):
        raise click.UsageError("recengine is not a plugin: update recengine itself with pip, not with "
                               "`recengine plugins install`")
    args = ["install"]
    for flag, on in (("--upgrade", upgrade), ("--force-reinstall", force_reinstall), ("--no-deps", no_deps),
                     ("--no-build-isolation", no_build_isolation)):
        if on:
            args.append(flag)
    constraints = None if no_constraints else (Path(constraints_path) if constraints_path else default_constraints())
    if constraints is not None:
        args += ["--constraint", str(constraints)]
    for path in editable:
        args += ["--editable", path]
    args += list(packages)
    run_pip(pip_command(*args), "install")
    from recengine.plugin_manager import reset_plugin_manager

    reset_plugin_manager()
    click.echo(f"Installed {', '.join([*editable, *packages])}"
               + (f" (constraints: {constraints})" if constraints else "")
               + ". `recengine plugins` lists what it registers.")


def plugin_distributions() -> dict[str, list[str]]:
    """Installed distributions that provide ``recengine`` entry points → their entry point names."""
    found: dict[str, list[str]] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        if dist is not None:
            found.setdefault(dist.metadata["Name"], []).append(entry_point.name)
    return found


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def resolve_plugin_distribution(name: str) -> str:
    """The distribution to uninstall for ``name`` (a distribution or a plugin/entry point name)."""
    installed = plugin_distributions()
    for dist, entry_points in installed.items():
        if _normalise(name) == _normalise(dist) or name in entry_points:
            return dist
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        problem = f"{name!r} is not installed"
    else:
        problem = f"{name!r} is installed but is not a recengine plugin (it has no {ENTRY_POINT_GROUP!r} entry point)"
    listed = ", ".join(sorted(installed)) or "none"
    raise click.ClickException(f"{problem}; installed plugin packages: {listed}")


@plugins.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask pip for confirmation.")
def uninstall(names: tuple[str, ...], yes: bool) -> None:
    """Uninstall plugin packages (by distribution or plugin name, as `recengine plugins` shows)."""
    dists = list(dict.fromkeys(resolve_plugin_distribution(name) for name in names))
    run_pip(pip_command("uninstall", *(["--yes"] if yes else []), *dists), "uninstall")
    from recengine.plugin_manager import reset_plugin_manager

    reset_plugin_manager()
    click.echo(f"Uninstalled {', '.join(dists)}.")


# ---------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------


@plugins.command()
@click.argument("names", nargs=-1)
@click.option("--all", "include_builtins", is_flag=True, help="Check the built-in plugins too.")
@json_option
def check(names: tuple[str, ...], include_builtins: bool, as_json: bool) -> None:
    """Run the component contract checks (recengine.testing) on plugins.

    NAMES are plugin names as `recengine plugins` lists them; default: every installed
    third-party plugin (and the built-ins with --all). Exits 1 when any check fails or a
    named plugin failed to load.
    """
    from recengine.plugin_manager import get_plugin_manager
    from recengine.testing import run_checks

    manager = get_plugin_manager()
    loaded = {info.name: info for info in manager.plugins}
    unknown = [name for name in names if name not in loaded]
    if unknown:
        raise click.ClickException(f"no loaded plugin named {', '.join(map(repr, unknown))}; "
                                   f"loaded plugins: {', '.join(loaded)}")
    chosen = [loaded[name] for name in names] or [info for info in manager.plugins
                                                  if include_builtins or not info.builtin]
    rows: list[dict[str, Any]] = []
    for info in chosen:
        if info.error:
            rows.append({"plugin": info.name, "family": "-", "component": "-", "ok": False,
                         "error": f"failed to load: {info.error}"})
    ok_plugins = [info.name for info in chosen if not info.error]
    for result in run_checks(manager, ok_plugins) if ok_plugins else []:
        rows.append({"plugin": result.plugin, "family": result.family, "component": result.name,
                     "ok": result.ok, "error": result.error})
    failed = [row for row in rows if not row["ok"]]
    if as_json:
        print_json(rows)
    elif not rows:
        console.print("No third-party plugin components to check (use --all for the built-ins).")
    else:
        table = Table(title="recengine plugin contract checks")
        for column in ("plugin", "family", "component", "result"):
            table.add_column(column)
        for row in rows:
            outcome = "[green]ok[/]" if row["ok"] else f"[red]FAILED: {escape(row['error'])}[/]"
            table.add_row(row["plugin"], row["family"], row["component"], outcome)
        console.print(table)
    if failed:
        sys.exit(1)
