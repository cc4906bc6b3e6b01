"""A project directory: one folder per domain with its store, snapshot, data and bundles.

    <project>/<domain>/recengine.duckdb          the feature store
    <project>/<domain>/recengine.snapshots/      published snapshots (what serving reads)
    <project>/<domain>/models/<domain>/<version>/  model bundles
    <project>/<domain>/data/                     generated files
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recengine.bundle import resolve_bundle
from recengine.errors import ConfigError, NotFoundError
from recengine.feature_store.snapshot import default_root

if TYPE_CHECKING:  # the config module is imported where a config is built
    from recengine.config import PipelineConfig

DEFAULT_PROJECT = "recengine-project"
ALL_DOMAINS = ("ecommerce", "news", "video", "social")


def domain_paths(project: str | Path, domain: str) -> dict[str, Path]:
    """Where a domain's store, models, data and snapshots live inside a project."""
    base = Path(project) / domain
    store = base / "recengine.duckdb"
    return {"base": base, "store": store, "models": base / "models", "data": base / "data",
            "snapshots": default_root(store)}


def domain_config(domain: str | None) -> PipelineConfig:
    """The pipeline config a domain preset recommends (defaults when there is no domain)."""
    from recengine.config import PipelineConfig

    if not domain:
        return PipelineConfig()
    from recengine.plugin_manager import get_plugin_manager

    preset = get_plugin_manager().domain(domain)
    return PipelineConfig.model_validate({"name": domain, "domain": domain, **preset.pipeline})


@dataclass
class PreparedDomain:
    domain: str
    paths: dict[str, Path]
    stats: dict[str, Any]
    trained: Any  # recengine.pipeline.TrainedPipeline


def prepare_domain(project: str | Path, domain: str, *, users: int, items: int, events: int, epochs: int,
                   seed: int = 0, dataset: str | Path | None = None, progress: bool = True,
                   overrides: dict[str, Any] | None = None) -> PreparedDomain:
    """Generate (or ingest ``dataset``) → fresh store → publish snapshot → train → bundle."""
    from recengine.config import PipelineConfig
    from recengine.feature_store import FeatureStore
    from recengine.pipeline import train_pipeline
    from recengine.plugin_manager import get_plugin_manager

    paths = domain_paths(project, domain)
    paths["base"].mkdir(parents=True, exist_ok=True)
    _refuse_if_served(paths["store"])
    for stale in (paths["store"], paths["store"].with_name(paths["store"].name + ".wal")):
        stale.unlink(missing_ok=True)  # a prepared domain always starts from a fresh store
    if dataset:
        schema, sources, config = None, [Path(dataset)], PipelineConfig(name=domain)
    else:
        preset = get_plugin_manager().domain(domain)
        if preset.generate is None:
            raise ConfigError(f"domain {domain!r} has no synthetic data generator")
        preset.generate(users, items, events, seed).write(paths["data"])
        schema, sources, config = preset.store_schema, [paths["data"]], domain_config(domain)
    with FeatureStore(paths["store"], schema=schema) as store:
        store.ingest_paths(sources)
        stats = store.stats()
        store.publish(paths["snapshots"])
    config = config.with_overrides({"train.epochs": epochs, "train.seed": seed, **(overrides or {})})
    trained = train_pipeline(paths["store"], config, paths["models"], progress=progress)
    return PreparedDomain(domain, paths, stats, trained)


def _refuse_if_served(store: Path) -> None:
    """Preparing a domain replaces its store: never under a running writer (its live writes
    would go to a deleted file)."""
    from recengine.feature_store import FeatureStore
    from recengine.feature_store.errors import StoreError, StoreLockedError

    if not store.exists():
        return
    try:
        FeatureStore(store, read_only=True).close()
    except StoreLockedError as locked:
        raise ConfigError(f"{store} is in use (PID {locked.pid}), e.g. by `recengine serve`: stop it before "
                          f"preparing this domain again, which replaces the store") from None
    except StoreError:
        return  # unreadable as a store: it is replaced anyway


@dataclass(frozen=True)
class DomainTarget:
    domain: str
    bundle: Path
    snapshot: Path
    store: Path


def find_domains(project: str | Path) -> list[str]:
    """Domains prepared in the project (a folder with a store)."""
    root = Path(project)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "recengine.duckdb").exists())


def resolve_targets(project: str | Path, domains: list[str] | None) -> list[DomainTarget]:
    """Bundle and snapshot of each domain; raise naming the command that creates a missing one."""
    names = domains or find_domains(project)
    if not names:
        raise NotFoundError(f"no prepared domains under {project}; run "
                          f"`recengine quickstart --domains {','.join(ALL_DOMAINS)} --project {project}`")
    targets = []
    for domain in names:
        paths = domain_paths(project, domain)
        try:
            bundle = resolve_bundle(domain, paths["models"])
        except NotFoundError:
            raise NotFoundError(
                f"domain {domain!r} has no trained bundle under {paths['models']}; create one with "
                f"`recengine quickstart --domains {domain} --project {project}` (or `recengine train "
                f"--store {paths['store']} --models {paths['models']} --domain {domain}`)") from None
        if not (paths["snapshots"] / "CURRENT").exists():
            raise NotFoundError(f"domain {domain!r} has no published snapshot under {paths['snapshots']}; run "
                              f"`recengine store publish --store {paths['store']}`")
        targets.append(DomainTarget(domain, bundle.resolve(), paths["snapshots"].resolve(), paths["store"].resolve()))
    return targets
