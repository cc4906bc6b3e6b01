"""Shared fixtures: paths to the shared data, small frames, and a fresh store per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ML100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"


@pytest.fixture
def ml100k() -> Path:
    """The shared MovieLens-100K RecBole files; skips where ../shared is absent."""
    if not (ML100K / "ml-100k.inter").exists():
        pytest.skip(f"needs the shared ml-100k data at {ML100K} (absent on this machine)")
    return ML100K


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.fixture
def small_frames() -> dict[str, pl.DataFrame]:
    """Three users, four items and a handful of time-ordered events."""
    t0 = datetime(2024, 1, 1)
    users = pl.DataFrame({"user_id": ["u1", "u2", "u3"], "age": [30, 40, 50], "city": ["a", "b", "c"]})
    items = pl.DataFrame({
        "item_id": ["i1", "i2", "i3", "i4"],
        "title": ["Red shoe", "Blue shoe", "Green hat", "Old book"],
        "category": ["shoes", "shoes", "hats", "books"],
    })
    events = pl.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
        "item_id": ["i1", "i2", "i3", "i1", "i4", "i2"],
        "event_type": ["view"] * 6,
        "value": [1.0] * 6,
        "ts": [t0 + timedelta(hours=h) for h in (1, 2, 3, 1, 5, 2)],
    })
    return {"users": users, "items": items, "events": events}


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All four domains generated, ingested, published and trained (small, 2 epochs)."""
    from recengine.project import ALL_DOMAINS, prepare_domain

    root = tmp_path_factory.mktemp("project")
    for domain in ALL_DOMAINS:
        prepare_domain(root, domain, users=300, items=300, events=12_000, epochs=2, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance for every test that needs it, shut down at the end."""
    import ray

    from recengine.ray_env import init_ray

    init_ray(num_cpus=2)
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# the matrix-factorisation pipeline several tests train: dense towers, dot, BPR, P-gen
MF_OVERRIDES = {"model.user_encoder": {"name": "dense", "params": {}},
                "model.item_encoder": {"name": "dense", "params": {}},
                "train.objective": "bpr", "train.protocol": "gen"}


def generated_shop(base: Path, users: int, items: int, events: int, seed: int, publish: bool = False) -> Path:
    """A generated e-commerce store under ``base`` (snapshot published to base/snapshots)."""
    from recengine.feature_store import FeatureStore
    from recengine.plugins.domains import ecommerce

    ecommerce.generate(users, items, events, seed).write(base / "data")
    with FeatureStore(base / "store.duckdb", schema=ecommerce.SCHEMA) as store:
        store.ingest_paths([base / "data"])
        if publish:
            store.publish(base / "snapshots")
    return base / "store.duckdb"


@dataclass
class InProcessDomain:
    """A domain prepared, trained and served in this process with its writer (LocalLog): what
    the API tests that write need, without Ray."""

    prepared: Any  # recengine.project.PreparedDomain
    writer: Any  # StoreWriter
    service: Any  # RecommendService, following the writer
    client: Any  # TestClient of the domain's app
    keys_file: Path
    secret: str  # of a key of the domain
    config: dict[str, Any]  # the service's ServeConfig

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@contextmanager
def domain_in_process(project: Path, domain: str, *, users: int, items: int, events: int) -> Iterator[InProcessDomain]:
    """Prepare ``domain`` under ``project`` (1 epoch), then serve it in-process with its
    writer and a key; the follower and the writer are stopped afterwards."""
    from fastapi.testclient import TestClient

    from recengine.api_keys import ApiKeys, keys_path
    from recengine.live_writer import StoreWriter
    from recengine.project import prepare_domain
    from recengine.serve.api import build_api
    from recengine.serve.live import LocalLog
    from recengine.serve.service import RecommendService

    prepared = prepare_domain(project, domain, users=users, items=items, events=events, epochs=1, progress=False)
    keys_file = keys_path(project)
    _, secret = ApiKeys(keys_file).create(domain)
    writer = StoreWriter(prepared.paths["store"])
    service = RecommendService(domain, log=LocalLog(writer))
    config = {"bundle": str(prepared.trained.bundle_path), "snapshot": str(prepared.paths["snapshots"]),
              "store": str(prepared.paths["store"]), "keys": str(keys_file)}
    service.configure(config)
    service.start_following()
    try:
        yield InProcessDomain(prepared, writer, service, TestClient(build_api(domain, lambda: service)), keys_file,
                              secret, config)
    finally:
        assert service.follower is not None
        service.follower.stop()
        writer.close()
