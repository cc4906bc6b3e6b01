"""``benchmarks/live_events.py``: wrk's write script sends the key and the event batches, and
``--quick`` measures every part without 5xx."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmarks.live_events import as_body, auth, event_bodies
from benchmarks.serve_load import run_wrk, side_figures, wrk_script

REPO = Path(__file__).resolve().parents[1]
SECRET = "rk_ecommerce_test-secret"
needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None,
                               reason="wrk is not installed (apt-get install -y wrk)")


class _KeyedEvents(BaseHTTPRequestHandler):
    """Answers 401 without the bearer key, 422 unless the body is a batch of 3 events, else 200."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("Authorization") != f"Bearer {SECRET}":
            status = 401
        elif len(body.get("events", [])) != 3 or self.headers.get("Content-Type") != "application/json":
            status = 422
        else:
            status = 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def events_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeyedEvents)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ecommerce/events"
    finally:
        server.shutdown()
        server.server_close()


@needs_wrk
def test_wrk_write_script_sends_the_key_and_the_batches(events_server: str, tmp_path: Path) -> None:
    batches = event_bodies(["u1", "u2"], ["i1", "i2", "i3"], batch=3, count=5, seed=0)
    wrk = shutil.which("wrk") or "wrk"
    keyed, bare = tmp_path / "keyed.lua", tmp_path / "bare.lua"
    keyed.write_text(wrk_script([as_body(events) for events in batches], auth(SECRET)))
    bare.write_text(wrk_script([as_body(events) for events in batches]))
    with_key = side_figures(run_wrk(wrk, events_server, keyed, connections=2, seconds=1))
    without_key = side_figures(run_wrk(wrk, events_server, bare, connections=2, seconds=1))
    assert with_key["requests"] > 0 and with_key["statuses"] == {"200": with_key["requests"]}
    assert without_key["requests"] > 0 and without_key["statuses"] == {"401": without_key["requests"]}


@pytest.mark.slow
@pytest.mark.ray
@needs_wrk
def test_quick_run_measures_every_part_without_5xx(tmp_path: Path) -> None:
    out = tmp_path / "live_events.json"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    completed = subprocess.run([sys.executable, "-m", "benchmarks.live_events", "--quick", "--json", str(out)],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(out.read_text())
    config = result["config"]
    assert [(row["batch"], row["connections"]) for row in result["throughput"]] == [
        (batch, level) for batch in config["batches"] for level in config["levels"]]
    for row in result["throughput"]:
        assert row["events_per_s"] > 0 and row["logged_events"] > 0, row
        assert row["5xx"] == 0, (row["batch"], row["connections"], row["statuses"])
    assert all(result["raw_duckdb"][str(batch)]["events_per_s"] > 0 for batch in config["batches"])
    visibility = result["visibility"]
    assert visibility["samples"] == config["samples"] and visibility["timeouts"] == 0
    assert 0 < visibility["first_p50_ms"] <= visibility["everywhere_p50_ms"]
    reads = result["recommend"]
    assert all(phase["requests"] > 0 and phase["5xx"] == 0 for phase in reads["phases"].values())
    assert reads["writes"]["batches_2xx"] > 0 and all(int(code) < 500 for code in reads["writes"]["statuses"])
    assert set(result["targets"]) >= {"events_per_s_met", "visible_met", "recommend_met"}
