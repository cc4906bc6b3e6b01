"""API keys of the write endpoints: the key store, `recengine keys`, and the FastAPI dependency."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from recengine.api_keys import ApiKeys, KeyStatus, keys_path, require_key
from recengine.cli import cli
from recengine.errors import ConfigError, NotFoundError
from recengine.serve.guard import RequestGuard
from recengine.serve.http_errors import install_error_handlers


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def keys(tmp_path: Path) -> ApiKeys:
    return ApiKeys.of_project(tmp_path)


def test_cli_create_list_revoke_round_trip(tmp_path: Path) -> None:
    project = str(tmp_path)
    created = _run("keys", "create", "--domain", "news", "--name", "ingest bot", "--project", project, "--json")
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)
    assert key["domain"] == "news" and key["name"] == "ingest bot" and key["revoked_at"] is None
    assert key["secret"].startswith("rk_news_") and key["key_id"].startswith("k_")
    assert "not shown again" in created.stderr
    table = _run("keys", "create", "--domain", "video", "--project", project)
    assert table.exit_code == 0 and "not shown again" in table.output
    video_secret = next(line for line in table.output.splitlines() if line.startswith("rk_video_"))

    listed = json.loads(_run("keys", "list", "--project", project, "--json").output)
    assert [(k["domain"], k["name"]) for k in listed] == [("news", "ingest bot"), ("video", None)]
    assert all(set(k) == {"key_id", "domain", "name", "created_at", "revoked_at"} for k in listed)
    news_only = json.loads(_run("keys", "list", "--domain", "news", "--project", project, "--json").output)
    assert [k["key_id"] for k in news_only] == [key["key_id"]]
    shown = _run("keys", "list", "--project", project).output
    assert key["key_id"] in shown and "ingest bot" in shown and key["secret"] not in shown

    revoked = _run("keys", "revoke", key["key_id"], "--project", project)
    assert revoked.exit_code == 0 and f"Revoked API key {key['key_id']}" in revoked.output
    after = {k["key_id"]: k for k in json.loads(_run("keys", "list", "--project", project, "--json").output)}
    assert after[key["key_id"]]["revoked_at"] is not None and listed[1]["key_id"] in after
    store = ApiKeys.of_project(tmp_path)
    assert store.check(key["secret"], "news").status is KeyStatus.REVOKED
    assert store.check(video_secret, "video").ok


def test_file_holds_hashes_only_with_mode_0600(tmp_path: Path, keys: ApiKeys) -> None:
    _, secret = keys.create("news")
    path = keys_path(tmp_path)
    assert keys.path == path and path.name == "api-keys.json"
    text = path.read_text()
    token = secret.removeprefix("rk_news_")
    assert secret not in text and token not in text
    assert len(json.loads(text)["keys"][0]["secret_sha256"]) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys.revoke(keys.list()[0].key_id)  # rewriting keeps the mode and leaves no temp file behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["api-keys.json"]


def test_create_refuses_an_unknown_domain(tmp_path: Path) -> None:
    result = _run("keys", "create", "--domain", "music", "--project", str(tmp_path))
    assert result.exit_code == 1 and "known domains: ecommerce, news, social, video" in result.output
    assert not keys_path(tmp_path).exists()


def test_check_matrix(keys: ApiKeys) -> None:
    news, news_secret = keys.create("news")
    _, video_secret = keys.create("video")
    old, old_secret = keys.create("news", name="old")
    keys.revoke(old.key_id)
    outcomes = {
        "missing": keys.check(None, "news"),
        "empty": keys.check("", "news"),
        "ok": keys.check(news_secret, "news"),
        "wrong": keys.check(news_secret[:-1] + ("A" if news_secret[-1] != "A" else "B"), "news"),
        "too long": keys.check("x" * 10_000, "news"),
        "revoked": keys.check(old_secret, "news"),
        "other domain": keys.check(video_secret, "news"),
    }
    assert {case: (check.status, check.http_status) for case, check in outcomes.items()} == {
        "missing": (KeyStatus.MISSING, 401), "empty": (KeyStatus.MISSING, 401), "ok": (KeyStatus.OK, 200),
        "wrong": (KeyStatus.INVALID, 403), "too long": (KeyStatus.INVALID, 403),
        "revoked": (KeyStatus.REVOKED, 403), "other domain": (KeyStatus.OTHER_DOMAIN, 403),
    }
    assert outcomes["ok"].key_id == news.key_id and outcomes["revoked"].key_id == old.key_id
    assert outcomes["wrong"].key_id is None


def test_has_keys_counts_live_keys_only(keys: ApiKeys) -> None:
    assert not keys.has_keys("news") and keys.list() == []  # no file: no keys
    info, _ = keys.create("news")
    assert keys.has_keys("news") and not keys.has_keys("video")
    keys.revoke(info.key_id)
    assert not keys.has_keys("news")


def test_revoke_reaches_a_running_instance(tmp_path: Path, keys: ApiKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    info, secret = keys.create("news")
    server = ApiKeys.of_project(tmp_path)  # as a running server holds it
    reads = []
    original = ApiKeys._read
    monkeypatch.setattr(ApiKeys, "_read", lambda self: reads.append(1) or original(self))
    assert server.check(secret, "news").ok and server.check(secret, "news").ok
    assert len(reads) == 1  # an unchanged file is not parsed again
    assert _run("keys", "revoke", info.key_id, "--project", str(tmp_path)).exit_code == 0
    reads.clear()
    assert server.check(secret, "news").status is KeyStatus.REVOKED
    assert len(reads) == 1


def test_revoke_unknown_id_names_it_and_the_known_ones(tmp_path: Path, keys: ApiKeys) -> None:
    info, _ = keys.create("news")
    with pytest.raises(NotFoundError, match=rf"unknown API key 'k_00000000'.*known keys: {info.key_id}"):
        keys.revoke("k_00000000")
    result = _run("keys", "revoke", "k_00000000", "--project", str(tmp_path))
    assert result.exit_code == 1 and info.key_id in result.output and "Traceback" not in result.output


_ENTRY = {"key_id": "k_0000000a", "domain": "news", "created_at": "2025-01-01T00:00:00+00:00",
          "secret_sha256": "0" * 64}


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "top level: Invalid JSON"),
    ('{"version": 1, "keys": [{"key_id": "k_0000000a", "domain": "news"}]}', "keys.0.created_at: Field required"),
    ('{"version": 1, "keys": "all of them"}', "keys: Input should be a valid array"),
    (json.dumps({"version": 1, "keys": [_ENTRY, _ENTRY]}), "key id(s) k_0000000a appear twice"),
])
def test_corrupt_file_is_a_clear_error_naming_it(tmp_path: Path, keys: ApiKeys, content: str, fragment: str) -> None:
    keys.path.write_text(content)
    with pytest.raises(ConfigError, match="API keys file .*api-keys.json is corrupt") as caught:
        keys.check("rk_news_whatever", "news")
    assert fragment in str(caught.value)
    result = _run("keys", "list", "--project", str(tmp_path))
    assert result.exit_code == 1 and "api-keys.json is corrupt" in result.output
    assert "Traceback" not in result.output


def _app(keys: ApiKeys | None) -> TestClient:
    app = FastAPI()
    app.add_middleware(RequestGuard)
    install_error_handlers(app)

    @app.post("/events")
    async def write(key_id: str = Depends(require_key(lambda: keys, "news"))) -> dict[str, str]:  # noqa: B008
        return {"key_id": key_id}

    return TestClient(app)


def test_dependency_answers_401_403_200_in_the_one_error_shape(keys: ApiKeys) -> None:
    news, secret = keys.create("news")
    _, video_secret = keys.create("video")
    old, old_secret = keys.create("news")
    keys.revoke(old.key_id)
    client = _app(keys)

    missing = client.post("/events", headers={"X-Request-ID": "req-1"})
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json() == {"detail": missing.json()["detail"], "code": "unauthorized", "request_id": "req-1"}
    assert "Authorization: Bearer <key>" in missing.json()["detail"]
    assert "recengine keys create --domain news" in missing.json()["detail"]
    assert client.post("/events", headers={"Authorization": f"Basic {secret}"}).status_code == 401

    for sent, fragment in [("rk_news_wrong", "not a key of this server"), (old_secret, f"{old.key_id} was revoked"),
                           (video_secret, "not a key of domain 'news'")]:
        refused = client.post("/events", headers={"Authorization": f"Bearer {sent}"})
        body = refused.json()
        assert refused.status_code == 403 and set(body) == {"detail", "code", "request_id"}
        assert body["code"] == "forbidden" and fragment in body["detail"] and sent not in refused.text
        assert body["request_id"] == refused.headers["X-Request-ID"]

    allowed = client.post("/events", headers={"Authorization": f"Bearer {secret}"})
    assert allowed.status_code == 200 and allowed.json() == {"key_id": news.key_id}


def test_dependency_without_a_key_store_refuses_everything() -> None:
    client = _app(None)
    assert client.post("/events").status_code == 401
    assert client.post("/events", headers={"Authorization": "Bearer rk_news_x"}).status_code == 403
