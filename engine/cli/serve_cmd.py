"""``recengine serve``: one Ray Serve application per domain; ``serve config`` writes YAML."""

from __future__ import annotations

import time
from pathlib import Path

import click

from recengine.cli.common import console, friendly_errors
from recengine.project import DEFAULT_PROJECT

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
@click.pass_context
def serve(ctx: click.Context, project: str, domains: str | None, host: str, port: int, address: str | None,
          cpus_per_replica: float, access_log: bool, replicas: int) -> None:
    """Serve every prepared domain over HTTP at /<domain> (Ctrl-C stops everything).

    Each domain is a Ray Serve application with POST /<domain>/recommend,
    GET /<domain>/similar/{item_id}, /<domain>/health, /<domain>/model and docs at /<domain>/docs.
    """
    if ctx.invoked_subcommand is not None:
        return
    from recengine.project import resolve_targets

    with friendly_errors():
        targets = resolve_targets(project, _domains(domains))
    from ray import serve as ray_serve

    from recengine.ray_env import init_ray
    from recengine.serve.deployment import domain_application, http_options

    with friendly_errors():
        init_ray(address)
    try:
        ray_serve.start(http_options=http_options(host, port), logging_config={"enable_access_log": access_log})
        for target in targets:
            ray_serve.run(domain_application(target.domain, target.bundle, target.snapshot, cpus_per_replica,
                                             replicas=replicas, access_log=access_log),
                          name=target.domain, route_prefix=f"/{target.domain}")
            console.print(f"[bold]{target.domain}[/] → http://{host}:{port}/{target.domain} "
                          f"({target.bundle.parent.name} v{target.bundle.name})")
        console.print("Serving. Press Ctrl-C to stop.")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("Stopping...")
    finally:
        import ray

        if ray.is_initialized():
            ray_serve.shutdown()
            ray.shutdown()


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
    from recengine.serve.deployment import MAX_QUEUED_REQUESTS, http_options

    with friendly_errors():
        targets = resolve_targets(project, _domains(domains))
    config = {
        "http_options": http_options(host, port),
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
