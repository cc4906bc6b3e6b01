"""``GET /<domain>/metrics``: Prometheus text, parsed with prometheus_client's own parser.

In this process (no Ray): counters move by exactly the requests made (the guard's 400/413,
a 422, 404s and a 405 included) under their route templates, the latency histogram has its
buckets, writes are counted by kind, the model info gauge names the serving bundle and
snapshot, the writer's figures are its own, and the endpoint follows the read-key rule.

Served for real (Ray Serve, two replicas, the writer actor): a scrape reaches one replica at
random, yet every answer reports both replicas' requests, with equal totals once they have
flushed; counters never go back; Ray Serve's own series of the application are included;
and with the writer gone a scrape still answers 200, without its series, counting the error.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families

from recengine.api_keys import ApiKeys, keys_path
from recengine.live_writer import StoreWriter
from recengine.serve.api import build_api
from recengine.serve.guard import MAX_BODY_BYTES
from recengine.serve.metrics import LATENCY_BUCKETS, UNMATCHED_ROUTE, metrics_for
from recengine.serve.metrics_hub import HUB_NAMESPACE, PUSH_INTERVAL_S, MetricsHub, hub_name
from recengine.serve.service import RecommendService
from tests.conftest import domain_in_process, free_port

DOMAIN = "ecommerce"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]  # (sample name, labels): value


# -- reading a scrape ----------------------------------------------------------------------
def parse(text: str) -> Samples:
    """Every sample of a scrape, parsed by prometheus_client (a duplicate would be a bug)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} twice in one scrape"
            samples[key] = sample.value
    return samples


def scrape(client: TestClient | httpx.Client, **options: Any) -> Samples:
    answer = client.get("/metrics", **options)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
    return parse(answer.text)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (over replicas)."""
    wanted = set(labels.items())
    return sum(value for (sample, found), value in samples.items() if sample == name and wanted <= found)


def labelled(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(found) for (sample, found), _ in samples.items() if sample == name]


def requests_by_route(samples: Samples, skip_route: str | None = "/metrics") -> Tally[tuple[str, str, str]]:
    """Requests summed over replicas: (route, method, status) → count."""
    counts: Tally[tuple[str, str, str]] = Tally()
    for (sample, found), value in samples.items():
        labels = dict(found)
        if sample == "recengine_http_requests_total" and labels["route"] != skip_route:
            counts[labels["route"], labels["method"], labels["status"]] += int(value)
    return counts


# -- one domain in this process, with its writer ---------------------------------------------
@dataclass
class Local:
    writer: StoreWriter
    service: RecommendService
    client: TestClient
    auth: dict[str, str]
    keys_file: Path
    config: dict[str, Any]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    with domain_in_process(tmp_path_factory.mktemp("metrics"), DOMAIN, users=300, items=200, events=5000) as served:
        yield Local(served.writer, served.service, served.client, served.auth, served.keys_file, served.config)


def test_requests_are_counted_by_route_template_and_status_guard_refusals_included(local: Local) -> None:
    client, service = local.client, local.service
    user, item = str(service.recommender.bundle.users.ids[1]), str(service.recommender.item_ids[0])
    before = scrape(client)
    made: Tally[tuple[str, str, str]] = Tally()

    def made_one(route: str, method: str, answer: httpx.Response, status: int) -> None:
        assert answer.status_code == status, answer.text
        made[route, method, str(status)] += 1

    for _ in range(3):
        made_one("/recommend", "POST", client.post("/recommend", json={"user_id": user, "k": 5}), 200)
    made_one("/recommend", "POST", client.post("/recommend", json={"user_id": user, "k": 0}), 422)
    made_one("/recommend", "POST", client.post("/recommend", content=b"{" * 10, headers={
        "content-type": "application/json"}), 400)  # nested too deep: the guard's refusal
    made_one("/recommend", "POST", client.post("/recommend", content=b" " * (MAX_BODY_BYTES + 1), headers={
        "content-type": "application/json"}), 413)  # the guard's, before the app parses it
    made_one("/recommend", "GET", client.get("/recommend"), 405)
    made_one("/similar/{item_id}", "GET", client.get(f"/similar/{item}", params={"k": 3}), 200)
    made_one("/similar/{item_id}", "GET", client.get("/similar/no-such-item"), 404)
    made_one(UNMATCHED_ROUTE, "GET", client.get("/no/such/route"), 404)
    made_one(UNMATCHED_ROUTE, "GET", client.get("/no/other/route"), 404)
    made_one("/health", "GET", client.get("/health"), 200)
    after = scrape(client)

    moved = requests_by_route(after) - requests_by_route(before)
    assert moved == made  # nothing else moved, and raw paths never became routes
    scrapes = [total(s, "recengine_http_requests_total", route="/metrics", status="200") for s in (before, after)]
    assert scrapes[1] - scrapes[0] == 1  # the first scrape, counted once answered

    histogram = {"route": "/recommend", "method": "POST"}
    buckets = sorted((float(labels["le"]), total(after, "recengine_http_request_duration_seconds_bucket",
                                                 **labels))
                     for labels in labelled(after, "recengine_http_request_duration_seconds_bucket")
                     if labels.items() >= histogram.items())
    assert [le for le, _ in buckets] == [*LATENCY_BUCKETS, float("inf")]
    counts = [count for _, count in buckets]
    assert counts == sorted(counts)  # cumulative
    observed = total(after, "recengine_http_request_duration_seconds_count", **histogram)
    assert counts[-1] == observed
    assert observed - total(before, "recengine_http_request_duration_seconds_count", **histogram) == 6


def test_writes_are_counted_by_kind_and_the_writer_reports_its_own_figures(local: Local) -> None:
    client, service = local.client, local.service
    user, items = str(service.recommender.bundle.users.ids[2]), [str(i) for i in service.recommender.item_ids[:3]]
    events = [{"user_id": user, "item_id": item, "event_id": f"metrics-{item}"} for item in items]
    before = scrape(client)
    first = client.post("/events", headers=local.auth, json={"events": events})
    again = client.post("/events", headers=local.auth, json={"events": events})  # all three duplicates
    users = client.post("/users", headers=local.auth, json={"users": [{"user_id": "metrics-new"}]})
    assert (first.json()["accepted"], again.json()["accepted"], users.json()["accepted"]) == (3, 0, 1)
    after = scrape(client)

    def written(samples: Samples, kind: str) -> float:
        return total(samples, "recengine_records_written_total", kind=kind)

    assert (written(after, "events") - written(before, "events"), written(after, "users") - written(before, "users")) \
        == (3, 1)
    state = local.writer.live_state()
    assert total(after, "recengine_writer_up", domain=DOMAIN) == 1
    assert total(after, "recengine_writer_seq", domain=DOMAIN) == state.seq == users.json()["seq"]
    assert total(after, "recengine_writer_batches_since_publish", domain=DOMAIN) == state.batches_since_publish
    assert total(after, "recengine_writer_pending_batches", domain=DOMAIN) == 0
    assert total(after, "recengine_replica_live_seq", domain=DOMAIN) == service.live_seq() == state.seq


def test_impressions_the_answers_logged_are_counted_once_the_writer_stored_them(local: Local) -> None:
    client, service = local.client, local.service
    user = str(service.recommender.bundle.users.ids[3])

    def impressions() -> float:
        return total(scrape(client), "recengine_impressions_written_total", domain=DOMAIN)

    until(lambda: total(scrape(client), "recengine_impressions_pending") == 0, what="earlier impressions flushed")
    before = impressions()
    for k in (4, 6):
        assert len(client.post("/recommend", json={"user_id": user, "k": k}).json()["items"]) == k
    until(lambda: impressions() == before + 10, timeout_s=5, what="10 impressions stored")
    samples = scrape(client)
    assert total(samples, "recengine_impressions_dropped_total") == 0
    assert total(samples, "recengine_impressions_pending") == 0


def test_the_model_info_gauge_names_the_serving_bundle_and_snapshot(local: Local) -> None:
    samples = scrape(local.client)
    recommender = local.service.recommender
    assert recommender.online is not None
    info = labelled(samples, "recengine_model_info")
    assert [(i["domain"], i["model"], i["snapshot_version"]) for i in info] == [
        (DOMAIN, f"{recommender.bundle.name}/{recommender.bundle.version}", str(recommender.online.version))]
    assert total(samples, "recengine_model_info") == 1 and total(samples, "recengine_replica_ready") == 1


def test_per_arm_counters_count_recommendations_and_items_shown(local: Local) -> None:
    metrics = metrics_for(DOMAIN)
    before = scrape(local.client)
    metrics.record_recommendation("ecommerce/2", "candidate", "exp-1", items=10)
    metrics.record_recommendation("ecommerce/2", "candidate", "exp-1", items=7)
    metrics.record_recommendation("ecommerce/1", None, None, items=5)
    after = scrape(local.client)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    candidate = {"model": "ecommerce/2", "arm": "candidate", "experiment": "exp-1"}
    assert (moved("recengine_recommendations_total", **candidate),
            moved("recengine_recommended_items_total", **candidate)) == (2, 17)
    plain = {"model": "ecommerce/1", "arm": "", "experiment": ""}
    assert (moved("recengine_recommendations_total", **plain), moved("recengine_recommended_items_total", **plain)) \
        == (1, 5)


def test_metrics_follow_the_read_key_rule(local: Local) -> None:
    guarded = RecommendService(DOMAIN, {**local.config, "store": None, "require_key_for_reads": True})
    with TestClient(build_api(DOMAIN, lambda: guarded)) as client:
        for headers, status in (({}, 401), ({"Authorization": "Bearer not-a-key"}, 403)):  # as /recommend's
            assert client.get("/metrics", headers=headers).status_code == status
            assert client.post("/recommend", headers=headers, json={"user_id": "u", "k": 1}).status_code == status
        assert total(scrape(client, headers=local.auth), "recengine_replica_ready") == 1
    assert local.client.get("/metrics").status_code == 200  # reads need no key there


def test_the_hub_keeps_each_replicas_newest_snapshot_and_drops_silent_replicas() -> None:
    from prometheus_client.metrics_core import CounterMetricFamily

    def families(value: float) -> list[Any]:
        return [CounterMetricFamily("x", "x", value=value)]

    hub = MetricsHub(stale_after_s=0.2)
    hub.push("a", 2, families(5))
    hub.push("a", 1, families(3))  # an older snapshot arriving late: never replaces a newer one
    assert hub.exchange("b", 1, families(1)) == {"a": families(5), "b": families(1)}
    time.sleep(0.3)
    assert hub.exchange("b", 2, families(2)) == {"b": families(2)}  # "a" went silent: dropped


# -- served for real: two replicas behind Ray Serve's proxy ------------------------------------
@dataclass
class Served:
    url: str
    writer: Any
    auth: dict[str, str]
    user: str
    items: list[str]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/{DOMAIN}", timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, ray_cluster: Any) -> Iterator[Served]:
    from ray import serve

    from recengine.live_writer import start_writer
    from recengine.project import prepare_domain, resolve_targets
    from recengine.serve.deployment import DEFAULT_CPUS_PER_REPLICA, domain_application, http_options

    project = tmp_path_factory.mktemp("metrics-served")
    prepare_domain(project, DOMAIN, users=300, items=200, events=5000, epochs=1, progress=False)
    _, secret = ApiKeys(keys_path(project)).create(DOMAIN)
    target = resolve_targets(project, [DOMAIN])[0]
    service = RecommendService(DOMAIN, {"bundle": str(target.bundle), "snapshot": str(target.snapshot)})
    user, items = str(service.recommender.bundle.users.ids[1]), [str(i) for i in service.recommender.item_ids[:5]]
    writer = start_writer(target.store)
    serve.shutdown()  # Serve keeps the HTTP port of its first start: drop one another module left running
    port = free_port()
    serve.start(http_options=http_options("127.0.0.1", port))
    serve.run(domain_application(DOMAIN, target.bundle, target.snapshot, DEFAULT_CPUS_PER_REPLICA, replicas=2,
                                 store=target.store, keys=keys_path(project)),
              name=DOMAIN, route_prefix=f"/{DOMAIN}")
    yield Served(f"http://127.0.0.1:{port}", writer, {"Authorization": f"Bearer {secret}"}, user, items)
    serve.shutdown()
    ray_cluster.kill(writer, no_restart=True)


def hub_snapshots() -> Samples:
    """What the domain's hub holds now (every replica's last push), as one scrape would."""
    import ray

    hub = ray.get_actor(hub_name(DOMAIN), namespace=HUB_NAMESPACE)
    samples: Samples = {}
    for families in ray.get(hub.snapshots.remote()).values():
        for family in families:
            samples.update({(s.name, frozenset(s.labels.items())): s.value for s in family.samples})
    return samples


def until(condition: Any, timeout_s: float = 15.0, what: str = "") -> Any:
    """``condition()``'s first truthy value, polled; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def replicas_in(samples: Samples) -> set[str]:
    return {labels["replica"] for labels in labelled(samples, "recengine_replica_ready")}


@pytest.mark.ray
def test_a_scrape_of_either_replica_reports_both_replicas_requests(served: Served) -> None:
    with served.client() as client:
        until(lambda: len(replicas_in(scrape(client))) == 2, what="both replicas in a scrape")
        before = requests_by_route(hub_snapshots())
        sent: Tally[tuple[str, str, str]] = Tally()
        for n in range(30):
            answer = client.post("/recommend", json={"user_id": served.user, "k": 5})
            assert answer.status_code == 200, answer.text
            sent["/recommend", "POST", "200"] += 1
            if n % 10 == 0:
                assert client.post("/recommend", json={"user_id": served.user, "k": 0}).status_code == 422
                assert client.get(f"/similar/no-such-item-{n}").status_code == 404
                sent["/recommend", "POST", "422"] += 1
                sent["/similar/{item_id}", "GET", "404"] += 1
        events = [{"user_id": served.user, "item_id": item, "event_id": f"served-{item}"} for item in served.items]
        assert client.post("/events", headers=served.auth, json={"events": events}).json()["accepted"] == 5
        sent["/events", "POST", "200"] += 1
        expected = before + sent
        # every replica has pushed what it answered: from here on every scrape must agree
        until(lambda: requests_by_route(hub_snapshots()) == expected, what="both replicas' pushes")
        scrapes = [scrape(client) for _ in range(12)]

    for samples in scrapes:
        assert requests_by_route(samples) == expected
        assert total(samples, "recengine_records_written_total", kind="events") == 5
        assert len(replicas_in(samples)) == 2
    per_replica = {labels["replica"] for labels in labelled(scrapes[-1], "recengine_http_requests_total")
                   if labels["route"] == "/recommend" and labels["status"] == "200"}
    assert len(per_replica) == 2  # the proxy spread the requests: the totals are the two replicas' sums
    answered = {labels["replica"] for labels in labelled(scrapes[-1], "recengine_http_requests_total")
                if labels["route"] == "/metrics"}
    assert len(answered) == 2, "both replicas answered scrapes"
    for earlier, later in zip(scrapes, scrapes[1:]):  # counters never go back, whichever replica answers
        for (name, labels), value in earlier.items():
            if name.endswith(("_total", "_bucket", "_count")):
                assert later.get((name, labels), 0.0) >= value, (name, dict(labels))


@pytest.mark.ray
def test_served_scrapes_carry_the_writers_figures_and_ray_serves_own_series(served: Served) -> None:
    import ray

    with served.client() as client:
        samples = scrape(client)
        assert total(samples, "recengine_writer_up", domain=DOMAIN) == 1
        assert total(samples, "recengine_writer_seq", domain=DOMAIN) == ray.get(served.writer.ping.remote())
        models = {(i["model"], i["snapshot_version"]) for i in labelled(samples, "recengine_model_info")}
        assert len(models) == 1 and len(labelled(samples, "recengine_model_info")) == 2  # one per replica

        def proxy_requests() -> float:
            return total(scrape(client), "ray_serve_num_http_requests_total", application=DOMAIN)

        for _ in range(5):
            assert client.get("/health").status_code == 200
        # Ray's metrics agent exports the proxy's counts every few seconds
        until(lambda: proxy_requests() >= 5, timeout_s=30, what="Ray Serve's request counter")
        ray_series = [labels for (name, found), _ in scrape(client).items() if name.startswith("ray_serve_")
                      for labels in [dict(found)]]
        assert ray_series and all(labels["application"] == DOMAIN for labels in ray_series)


@pytest.mark.ray
def test_with_the_writer_gone_a_scrape_answers_without_its_series_and_counts_the_error(served: Served) -> None:
    import ray

    def writer_errors() -> float:
        return total(hub_snapshots(), "recengine_metrics_source_errors_total", source="writer")

    ray.kill(served.writer, no_restart=True)
    with served.client() as client:
        for _ in range(3):
            answer = client.get("/metrics")
            assert answer.status_code == 200, answer.text
            samples = parse(answer.text)
            assert total(samples, "recengine_writer_up", domain=DOMAIN) == 0
            assert not labelled(samples, "recengine_writer_seq")
            assert labelled(samples, "recengine_http_requests_total")  # the rest is all there
    until(lambda: writer_errors() == 3, timeout_s=5 * PUSH_INTERVAL_S, what="three writer errors pushed")
    time.sleep(2 * PUSH_INTERVAL_S)
    assert writer_errors() == 3  # one per scrape, no more
