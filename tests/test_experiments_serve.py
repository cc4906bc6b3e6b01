"""Experiments through the HTTP API and the CLI: request ids and impressions, the admin
routes' keys, A/B routing that holds per user, interleaving, a report that counts what was
posted, promotion of the winner."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from recengine.api_keys import ApiKeys
from recengine.cli import cli
from recengine.live_writer import StoreWriter
from recengine.project import resolve_targets
from recengine.serve.api import ADMIN_KEY_ENV, build_api
from recengine.serve.live import LocalLog
from recengine.serve.service import RecommendService

DOMAIN = "news"
ADMIN = {"X-Admin-Key": "the-operator"}


@pytest.fixture
def served(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A private copy of the news domain with a second bundle version (the same weights as
    v1, so the arms' answers differ only by who answered), served with its writer."""
    copy = tmp_path / "project"
    shutil.copytree(project / DOMAIN, copy / DOMAIN)
    for leftover in (copy / DOMAIN).glob("*.writer.json"):
        leftover.unlink()
    target = resolve_targets(copy, [DOMAIN])[0]
    second = target.bundle.parent / "2"
    shutil.copytree(target.bundle, second)
    manifest = json.loads((second / "manifest.json").read_text())
    (second / "manifest.json").write_text(json.dumps({**manifest, "version": 2}))
    monkeypatch.setenv(ADMIN_KEY_ENV, ADMIN["X-Admin-Key"])
    _, secret = ApiKeys.of_project(copy).create(DOMAIN)
    writer = StoreWriter(target.store)
    service = RecommendService(DOMAIN, {"bundle": str(target.bundle), "snapshot": str(target.snapshot),
                                        "store": str(target.store), "keys": str(copy / "api-keys.json")},
                               log=LocalLog(writer))
    service.start_following()
    users = [str(u) for u in service.recommender.bundle.users.ids[1:41]]
    try:
        yield {"client": TestClient(build_api(DOMAIN, lambda: service)), "service": service, "writer": writer,
               "secret": secret, "users": users, "project": copy}
    finally:
        assert service.follower is not None
        service.follower.stop()
        writer.close()


def _follow(service: RecommendService, experiment: str | None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = service.experiment.id if service.experiment is not None else None
        if current == experiment:
            return
        time.sleep(0.05)
    raise AssertionError(f"the replica did not follow experiment {experiment}")


def test_every_answer_has_its_request_id_and_logs_what_it_showed(served: dict) -> None:
    client, writer = served["client"], served["writer"]
    answer = client.post("/recommend", json={"user_id": served["users"][0], "k": 5})
    body = answer.json()
    assert answer.status_code == 200 and body["request_id"] == answer.headers["x-request-id"]
    assert body["experiment"] is None and body["arm"] is None
    served["service"].impressions.flush()
    shown = writer.store.sql("SELECT item_id, position, model, user_id FROM impressions WHERE request_id = ? "
                             "ORDER BY position", [body["request_id"]])
    assert shown["item_id"].to_list() == [item["item_id"] for item in body["items"]]
    assert shown["position"].to_list() == list(range(len(body["items"])))
    assert set(shown["model"]) == {body["model"]} and set(shown["user_id"]) == {served["users"][0]}


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 401, "unauthorized"), ({"X-Admin-Key": "wrong"}, 403, "forbidden")])
def test_admin_routes_need_the_operator_key(served: dict, headers: dict, status: int, code: str) -> None:
    body = {"arms": [{"name": "control", "bundle": "news/1"}, {"name": "candidate", "bundle": "news/2"}]}
    for path, payload in (("/admin/experiment", body), ("/admin/experiment/stop", {})):
        answer = served["client"].post(path, json=payload, headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert served["writer"].store.experiment(DOMAIN) is None


def test_admin_routes_are_off_without_an_operator_key(served: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_KEY_ENV)
    answer = served["client"].post("/admin/experiment/stop", json={}, headers=ADMIN)
    assert answer.status_code == 403 and ADMIN_KEY_ENV in answer.json()["detail"]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"arms": [{"name": "control", "bundle": "news/1"}]}, "at least 2"),
    ({"arms": [{"name": "a", "bundle": "news/1"}, {"name": "b", "bundle": "news/9"}]}, "no version 9"),
    ({"arms": [{"name": "a", "bundle": "news/1"}, {"name": "a", "bundle": "news/2"}]}, "must differ"),
    ({"arms": [{"name": "a", "bundle": "news/1"}, {"name": "b", "bundle": "news/2"}], "split": [1, 2, 3]}, "3 shares"),
    ({"arms": [{"name": "a", "bundle": "news/1"}, {"name": "b", "bundle": "news/2"}], "mode": "bandit"}, "mode"),
])
def test_a_bad_experiment_is_a_4xx_naming_the_problem_and_starts_nothing(served: dict, body: dict,
                                                                        fragment: str) -> None:
    answer = served["client"].post("/admin/experiment", json=body, headers=ADMIN)
    assert 400 <= answer.status_code < 500 and fragment in json.dumps(answer.json()["detail"])
    assert served["writer"].store.experiment(DOMAIN) is None


def test_ab_routes_each_user_to_one_arm_and_the_report_counts_the_clicks(served: dict) -> None:
    client, service, users = served["client"], served["service"], served["users"]
    assert client.get("/experiment").status_code == 404
    started = client.post("/admin/experiment", headers=ADMIN, json={
        "arms": [{"name": "control", "bundle": "news/1"}, {"name": "candidate", "bundle": "news/2"}]})
    assert started.status_code == 201, started.json()
    spec = started.json()
    assert [a["path"] for a in spec["arms"]] == [str(Path(p).resolve()) for p in (
        served["project"] / "news/models/news/1", served["project"] / "news/models/news/2")]
    _follow(service, spec["id"])
    seen: dict[str, set[str]] = {}
    clicks = {"control": 0, "candidate": 0}
    requests = {"control": 0, "candidate": 0}
    for rounds in range(2):
        for n, user in enumerate(users):
            body = client.post("/recommend", json={"user_id": user, "k": 5}).json()
            assert body["experiment"] == spec["id"]
            assert body["model"] == ("news/1" if body["arm"] == "control" else "news/2")
            seen.setdefault(user, set()).add(body["arm"])
            requests[body["arm"]] += 1
            if body["arm"] == "candidate" or n % 4 == 0:  # the candidate's answers get clicked more
                event = {"user_id": user, "item_id": body["items"][0]["item_id"]}
                if rounds == 0:
                    event["request_id"] = body["request_id"]  # the second round is attributed by time
                posted = client.post("/events", json={"events": [event]},
                                     headers={"Authorization": f"Bearer {served['secret']}"})
                assert posted.status_code == 200, posted.json()
                clicks[body["arm"]] += 1
    assert all(len(arms) == 1 for arms in seen.values())  # a user always sees the same arm
    assert min(requests.values()) > 0
    report = client.get("/experiment").json()
    arms = {arm["name"]: arm for arm in report["arms"]}
    assert {name: arm["requests"] for name, arm in arms.items()} == requests
    assert {name: arm["clicks"] for name, arm in arms.items()} == clicks
    assert arms["candidate"]["ctr"] == pytest.approx(1.0)
    assert report["ab"]["difference"] > 0 and report["status"] == "running"
    online = client.get("/online").json()
    assert {m["name"] for m in online["models"]} == {"news/1", "news/2"}
    assert sum(m["events"] for m in online["events_per_minute"]) == sum(clicks.values())
    stopped = client.post("/admin/experiment/stop", json={"promote": "candidate"}, headers=ADMIN)
    assert stopped.status_code == 200 and stopped.json()["winner"] == "candidate"
    _follow(service, None)
    after = client.post("/recommend", json={"user_id": users[0], "k": 5}).json()
    assert after["model"] == "news/2" and after["experiment"] is None  # the winner serves
    assert client.get("/experiment").json()["status"] == "stopped"


def test_interleaving_shows_both_arms_items_and_credits_the_clicked_one(served: dict) -> None:
    client, service = served["client"], served["service"]
    spec = client.post("/admin/experiment", headers=ADMIN, json={
        "mode": "interleave",
        "arms": [{"name": "control", "bundle": "news/1"}, {"name": "candidate", "bundle": "news/2"}]}).json()
    _follow(service, spec["id"])
    for user in served["users"][:20]:
        body = client.post("/recommend", json={"user_id": user, "k": 6}).json()
        assert body["arm"] == "interleaved" and body["model"] == "news/1 + news/2"
        assert len({i["item_id"] for i in body["items"]}) == len(body["items"])
    service.impressions.flush()
    teams = served["writer"].store.sql("SELECT request_id, arm, model FROM impressions WHERE experiment = ?",
                                       [spec["id"]])
    assert set(teams["arm"]) == {"control", "candidate"}
    assert all((arm == "control") == (model == "news/1") for arm, model in zip(teams["arm"], teams["model"]))
    report = client.get("/experiment").json()
    assert report["interleaving"] is not None and report["ab"] is None
    assert [arm["requests"] for arm in report["arms"]] == [20, 20]


def test_cli_starts_reports_and_stops_an_experiment_on_a_store_nothing_serves(project: Path, tmp_path: Path) -> None:
    copy = tmp_path / "project"
    shutil.copytree(project / DOMAIN, copy / DOMAIN)
    runner = CliRunner()
    started = runner.invoke(cli, ["experiment", "start", "--project", str(copy), "--domain", DOMAIN,
                                  "--arm", "control=news/1", "--arm", "candidate=news", "--split", "80,20", "--json"])
    assert started.exit_code == 0, started.output
    spec = json.loads(started.output)
    assert [a["weight"] for a in spec["arms"]] == [0.8, 0.2] and spec["arms"][1]["bundle"] == "news/1"
    again = runner.invoke(cli, ["experiment", "start", "--project", str(copy), "--domain", DOMAIN,
                                "--arm", "a=news/1", "--arm", "b=news/1"])
    assert again.exit_code != 0 and "still running" in again.output
    status = runner.invoke(cli, ["experiment", "status", "--project", str(copy), "--domain", DOMAIN])
    assert status.exit_code == 0 and spec["id"] in status.output and "not enough data" in status.output
    bad = runner.invoke(cli, ["experiment", "stop", "--project", str(copy), "--domain", DOMAIN, "--promote", "c"])
    assert bad.exit_code != 0 and "has arms" in bad.output
    stopped = runner.invoke(cli, ["experiment", "stop", "--project", str(copy), "--domain", DOMAIN,
                                  "--promote", "control"])
    assert stopped.exit_code == 0 and "promoted" in stopped.output
    malformed = runner.invoke(cli, ["experiment", "start", "--project", str(copy), "--domain", DOMAIN,
                                    "--arm", "control", "--arm", "b=news/1"])
    assert malformed.exit_code == 2 and "NAME=BUNDLE" in malformed.output


@pytest.mark.parametrize("query", ["k=0", "k=101", "window_hours=0", "window_hours=-1", "window_hours=abc",
                                   "hours=0"])
def test_report_parameters_out_of_range_are_422(served: dict, query: str) -> None:
    path = "/online" if query.startswith("hours") else "/experiment"
    answer = served["client"].get(f"{path}?{query}")
    assert answer.status_code == 422 and answer.json()["code"] == "validation_error"


def test_a_preview_is_answered_but_not_logged_as_impressions(served: dict) -> None:
    client, service, writer = served["client"], served["service"], served["writer"]
    body = client.post("/recommend", json={"user_id": served["users"][0], "k": 5, "log_impressions": False}).json()
    assert body["items"] and body["request_id"]
    service.impressions.flush()
    logged = writer.store.sql("SELECT count(*) AS n FROM impressions WHERE request_id = ?", [body["request_id"]])
    assert logged["n"][0] == 0
