"""Real Ray Serve: four domain applications over HTTP, and a live model swap under load."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from recengine.config import PipelineConfig
from recengine.pipeline import train_pipeline
from recengine.project import ALL_DOMAINS, domain_config, domain_paths, resolve_targets
from recengine.serve.deployment import domain_application
from tests.conftest import free_port

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def served(project: Path, ray_cluster):  # type: ignore[no-untyped-def]
    from ray import serve

    serve.shutdown()  # Serve keeps the HTTP port of its first start: drop one another module left running
    port = free_port()
    # no request timeout (a swap restarts the replica: ~10 s here); the proxy's JSON errors come
    # with the local cluster's environment (recengine.ray_env)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    for target in resolve_targets(project, list(ALL_DOMAINS)):
        serve.run(domain_application(target.domain, target.bundle, target.snapshot),
                  name=target.domain, route_prefix=f"/{target.domain}")
    yield f"http://127.0.0.1:{port}"
    for domain in ALL_DOMAINS:
        serve.delete(domain)


def test_every_domain_answers_over_http(served: str) -> None:
    with httpx.Client(base_url=served, timeout=30) as client:
        for domain in ALL_DOMAINS:
            ok = client.post(f"/{domain}/recommend", json={"user_id": "u0000001", "k": 5})
            assert ok.status_code == 200 and len(ok.json()["items"]) >= 1, ok.text
            # after an answer the domain's /health has the full timeout (before any, it has 1 s: on
            # two oversubscribed cores a fresh replica's first answer can take longer, a 503 "starting")
            assert client.get(f"/{domain}/health").json()["status"] == "ok"
            bad = client.post(f"/{domain}/recommend", json={"user_id": "u0000001", "k": -1})
            assert bad.status_code == 422 and bad.json()["code"] == "validation_error"  # the replica's own
            missing = client.get(f"/{domain}/similar/definitely-not-an-item")
            assert missing.status_code == 404 and missing.json()["detail"].startswith("unknown item"), missing.text
        nowhere = client.get("/no-such-domain/recommend")  # the proxy's own 404 (no root app here), in JSON
        assert nowhere.status_code == 404 and nowhere.json()["code"] == "not_found", nowhere.text
        assert nowhere.json()["request_id"] == nowhere.headers["x-request-id"]


def test_new_bundle_is_picked_up_under_load_without_failures(served: str, project: Path) -> None:
    from ray import serve

    paths = domain_paths(project, "ecommerce")
    config: PipelineConfig = domain_config("ecommerce").with_overrides({"train.epochs": 1, "train.seed": 5})
    newer = train_pipeline(paths["store"], config, paths["models"], progress=False).bundle_path
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=served, timeout=30) as client:
            while not stop.is_set():
                statuses.append(client.post("/ecommerce/recommend", json={"user_id": "u0000002", "k": 10}).status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    serve.run(domain_application("ecommerce", newer, paths["snapshots"].resolve()),
              name="ecommerce", route_prefix="/ecommerce")
    deadline = time.time() + 60
    with httpx.Client(base_url=served, timeout=30) as client:
        while client.get("/ecommerce/model").json()["version"] != int(newer.name) and time.time() < deadline:
            time.sleep(0.2)
        version = client.get("/ecommerce/model").json()["version"]
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert version == int(newer.name)
    assert len(statuses) > 20 and set(statuses) == {200}, Counter_of(statuses)


def test_new_snapshot_is_picked_up(served: str, project: Path) -> None:
    from ray import serve

    from recengine.feature_store import FeatureStore

    paths = domain_paths(project, "video")
    with httpx.Client(base_url=served, timeout=30) as client:
        before = client.get("/video/model").json()["snapshot_version"]
        with FeatureStore(paths["store"]) as store:
            published = store.publish(paths["snapshots"]).version
        target = resolve_targets(project, ["video"])[0]
        serve.run(domain_application("video", target.bundle, target.snapshot), name="video", route_prefix="/video")
        assert published == before + 1
        assert client.get("/video/model").json()["snapshot_version"] == published


def Counter_of(values: list[int]) -> dict[int, int]:  # noqa: N802 - a readable failure message
    from collections import Counter

    return dict(Counter(values))
