"""``recengine serve``: one Ray Serve application per domain; ``serve config`` writes YAML."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from recengine.cli.common import console, friendly_errors
from recengine.project import DEFAULT_PROJECT

if TYPE_CHECKING:
    from recengine.api_keys import ApiKeys

project_option = click.option("--project", default=DEFAULT_PROJECT, show_default=True,
                              type=click.Path(file_okay=False), help="Project directory (one folder per domain).")
domains_option = click.option("--domains", default=None,
                              help="Comma list of domains (default: every prepared domain in the project).")


def _domains(value: str | None) -> list[str] | None:
    return [d.strip() for d in value.split(",") if d.strip()] if value else None


replicas_option = click.option("--replicas", default=1, show_default=True, type=click.IntRange(1, 64),
                               help="Replicas per domain: with 2 or more, the survivors keep answering "
                                    "while a dead replica is replaced.")


@click.group(invoke_without_command=True)
@project_option
@domains_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--address", default=None,
              help="Join a running Ray cluster (auto, ray://host:10001) instead of starting one.")
@click.option("--cpus-per-replica", default=0.25, show_default=True, type=click.FloatRange(0.01, 64))
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Log a line per request (replicas and proxy); off by default: it costs CPU and disk under load.")
@replicas_option
@click.option("--require-key-for-reads", is_flag=True,
              help="Recommend and similar need an API key of the domain too (writes always do).")
@click.option("--create-items", is_flag=True,
              help="Posted events may name items the store lacks (created bare); default: refused (422).")
@click.pass_context
def serve(ctx: click.Context, project: str, domains: str | None, host: str, port: int, address: str | None,
          cpus_per_replica: float, access_log: bool, replicas: int, require_key_for_reads: bool,
          create_items: bool) -> None:
    """Serve every prepared domain over HTTP at /<domain> (Ctrl-C stops everything).

    Each domain is a Ray Serve application with POST /<domain>/recommend,
    GET /<domain>/similar/{item_id}, /<domain>/health, /<domain>/model and docs at /<domain>/docs,
    and the writes POST /<domain>/events, /items and /users (API key: `recengine keys create`),
    which a single writer per store commits and every replica merges without a publish.
    While serving, `recengine store ingest/stats/publish`, `train`, `evaluate` and
    `recengine deploy` work on the same project.
    """
    if ctx.invoked_subcommand is not None:
        return
    from recengine.api_keys import ApiKeys, keys_path
    from recengine.project import resolve_targets

    with friendly_errors():
        targets = resolve_targets(project, _domains(domains))
        keys = ApiKeys(keys_path(project))
        _refuse_open_writes(host, [t.domain for t in targets], keys)
    import ray
    from ray import serve as ray_serve

    from recengine.live_writer import start_writer
    from recengine.ray_env import init_ray
    from recengine.serve.deployment import domain_application, serve_options
    from recengine.serve.root import root_application
    from recengine.serve_state import ServeState, write_state

    with friendly_errors():
        init_ray(address, namespace="serve")
    state = ServeState(project=str(Path(project).resolve()), host=host, port=port,
                       cpus_per_replica=cpus_per_replica, replicas=replicas, access_log=access_log,
                       require_key_for_reads=require_key_for_reads, create_items=create_items)
    writers = []  # the writer actors live as long as this process holds their handles
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `kill`, docker stop, systemd: the same clean stop as Ctrl-C
    try:
        # a cluster joined may lack the proxies' JSON errors in its environment: name them to its controller
        ray_serve.start(**serve_options(host, port, via_controller=address is not None),
                        logging_config={"enable_access_log": access_log})
        for target in targets:
            with friendly_errors():
                writers.append(start_writer(target.store))  # holds the store; the CLI reaches it through it
            ray_serve.run(domain_application(target.domain, target.bundle, target.snapshot, cpus_per_replica,
                                             **state.app_options(target.store, keys.path)),
                          name=target.domain, route_prefix=f"/{target.domain}")
            console.print(f"[bold]{target.domain}[/] → http://{host}:{port}/{target.domain} "
                          f"({target.bundle.parent.name} v{target.bundle.name})")
        # last: the longest prefix wins, so "/" only gets what no domain serves (a JSON 404)
        ray_serve.run(root_application([t.domain for t in targets]), name="root", route_prefix="/")
        state.address = ray.get_runtime_context().gcs_address
        write_state(project, state)
        console.print("Serving. Press Ctrl-C to stop.")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("Stopping...")
    finally:
        from recengine.serve_state import clear_state

        clear_state(project)
        if ray.is_initialized():
            ray_serve.shutdown()
            ray.shutdown()


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _refuse_open_writes(host: str, domains: list[str], keys: ApiKeys) -> None:
    """Writes are always checked against keys; on a non-loopback host, a domain without one
    is a misconfiguration worth stopping for (nobody could write, or someone meant to)."""
    if host in LOOPBACK_HOSTS:
        return
    missing = [d for d in domains if not keys.has_keys(d)]
    if missing:
        from recengine.errors import ConfigError

        raise ConfigError(
            f"refusing to serve on {host} (reachable from other machines) with no API key for "
            f"{', '.join(missing)}: writes need one. Create it with `recengine keys create --domain "
            f"{missing[0]}`, or serve on 127.0.0.1.")


@serve.command("config")
@project_option
@domains_option
@click.option("--out", default="serve.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--cpus-per-replica", default=0.25, show_default=True, type=click.FloatRange(0.01, 64))
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log a line per request.")
@replicas_option
def serve_config(project: str, domains: str | None, out: str, host: str, port: int, cpus_per_replica: float,
                 access_log: bool, replicas: int) -> None:
    """Write the Serve config YAML equivalent to `recengine serve`, for `serve deploy` on a cluster.

    Paths in it are absolute: the bundle and snapshot directories must be visible to every
    node (shared storage) at the same paths.
    """
    import yaml

    from recengine.project import resolve_targets
    from recengine.serve.deployment import MAX_QUEUED_REQUESTS, serve_options

    with friendly_errors():
        targets = resolve_targets(project, _domains(domains))
    config = {
        **serve_options(host, port, via_controller=True),  # HTTP options, and the env that makes the proxies JSON
        "logging_config": {"enable_access_log": access_log},
        "applications": [
            {
                "name": t.domain,
                "route_prefix": f"/{t.domain}",
                "import_path": "recengine.serve.deployment:app_builder",
                "args": {"domain": t.domain},
                "deployments": [{
                    "name": "recommender",
                    "num_replicas": replicas,
                    "max_queued_requests": MAX_QUEUED_REQUESTS,
                    "ray_actor_options": {"num_cpus": cpus_per_replica},
                    "user_config": {"bundle": str(t.bundle), "snapshot": str(t.snapshot)},
                    "logging_config": {"enable_access_log": access_log},
                }],
            }
            for t in targets
        ],
    }
    Path(out).write_text(yaml.safe_dump(config, sort_keys=False))
    console.print(f"Wrote {out} with {len(targets)} application(s); deploy with `serve deploy {out}`.")
