"""Starting and stopping experiments on a store (the CLI, the admin endpoint and the writer
all go through these, so the same rules hold everywhere: one running experiment per domain,
arms that name loadable bundles, a promoted winner that is one of the arms)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recengine.errors import ConfigError, NotFoundError
from recengine.feature_store import FeatureStore
from recengine.online.schemas import ExperimentSpec


def resolve_arms(spec: ExperimentSpec, models: Path) -> ExperimentSpec:
    """The spec with each arm's bundle resolved to its directory (``news/4``, ``news`` or a path),
    checked to be a bundle of the experiment's domain."""
    from recengine.bundle import read_manifest, resolve_bundle_label

    arms = []
    for arm in spec.arms:
        path = resolve_bundle_label(models, arm.bundle)
        manifest = read_manifest(path)
        domain = manifest.get("domain")
        if domain not in (None, spec.domain):
            raise ConfigError(f"arm {arm.name}: bundle {arm.bundle} was trained for {domain!r}, not {spec.domain!r}")
        label = f"{manifest.get('name', path.parent.name)}/{manifest.get('version', path.name)}"
        arms.append(arm.model_copy(update={"path": str(path.resolve()), "bundle": label}))
    return spec.model_copy(update={"arms": arms})


def record_experiment(store: FeatureStore, spec: dict[str, Any]) -> dict[str, Any]:
    running = store.experiment(spec["domain"])
    if running is not None and running.get("stopped_at") is None:
        raise ConfigError(f"experiment {running['id']!r} is still running on {spec['domain']}; stop it first "
                          f"(`recengine experiment stop --domain {spec['domain']}`)")
    store.record_experiment(spec)
    return _recorded(store, spec["domain"], spec["id"])


def stop_experiment(store: FeatureStore, domain: str, winner: str | None = None) -> dict[str, Any]:
    running = store.experiment(domain)
    if running is None or running.get("stopped_at") is not None:
        raise NotFoundError(f"no experiment is running on {domain}")
    names = [arm["name"] for arm in running["arms"]]
    if winner is not None and winner not in names:
        raise ConfigError(f"--promote {winner!r}: experiment {running['id']!r} has arms {names}")
    store.stop_experiment(running["id"], winner)
    return _recorded(store, domain, running["id"])


def _recorded(store: FeatureStore, domain: str, experiment_id: str) -> dict[str, Any]:
    found = store.experiment(domain, experiment_id)
    assert found is not None
    return found
