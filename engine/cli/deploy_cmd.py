"""``recengine deploy``: make the live replicas of a served domain swap bundle (or snapshot)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from recengine.cli.common import console, friendly_errors
from recengine.cli.serve_cmd import project_option


@click.command()
@project_option
@click.option("--domain", required=True, help="The served domain to update.")
@click.option("--bundle", default=None,
              help="Bundle to serve: <name>/<version> (e.g. news/4), a name (its newest version) or a bundle "
                   "directory. Default: the domain's newest bundle.")
def deploy(project: str, domain: str, bundle: str | None) -> None:
    """Swap the model (and reload the published snapshot) of a running `recengine serve`.

    The replicas load the new bundle beside the old one and swap when it is ready: requests
    keep being answered throughout. Run it after `recengine train` on the served store.
    """
    with friendly_errors():
        from recengine.bundle import resolve_bundle_label
        from recengine.project import resolve_targets
        from recengine.serve_state import read_state

        state = read_state(project)
        target = resolve_targets(project, [domain])[0]
        chosen = resolve_bundle_label(target.bundle.parent.parent, bundle) if bundle else target.bundle
        deploy_bundle(project, domain, chosen)
    console.print(f"[bold]{domain}[/] now serves {chosen.parent.name} v{chosen.name} "
                  f"(http://{state.host}:{state.port}/{domain}/model)")


def deploy_bundle(project: str | Path, domain: str, bundle: Path) -> None:
    """Make the running `recengine serve` of ``project`` serve ``bundle`` for ``domain``
    (its replicas swap once the new model is loaded; no request is dropped)."""
    from ray import serve as ray_serve

    from recengine.api_keys import keys_path
    from recengine.project import resolve_targets
    from recengine.ray_env import init_ray
    from recengine.serve.deployment import domain_application
    from recengine.serve_state import read_state

    state = read_state(project)
    target = resolve_targets(project, [domain])[0]
    init_ray(state.address or "auto", logging_level=logging.ERROR, log_to_driver=False)
    ray_serve.run(domain_application(domain, bundle, target.snapshot, state.cpus_per_replica,
                                     **state.app_options(target.store, keys_path(project))),
                  name=domain, route_prefix=f"/{domain}")
