"""``benchmarks/serve_load.py``: wrk's Lua script counts statuses right, and ``--quick`` serves without 5xx."""

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

from benchmarks.serve_load import lua_script, run_wrk, side_figures

REPO = Path(__file__).resolve().parents[1]
needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None,
                               reason="wrk is not installed (apt-get install -y wrk)")


class _StatusByUser(BaseHTTPRequestHandler):
    """Answers 503 for user ``u7``, 404 for ``u3`` and 200 for anyone else."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        user = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["user_id"]
        status = {"u7": 503, "u3": 404}.get(user, 200)
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusByUser)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ecommerce/recommend"
    finally:
        server.shutdown()
        server.server_close()


@needs_wrk
def test_wrk_script_counts_statuses_per_rotated_user(status_server: str, tmp_path: Path) -> None:
    script = tmp_path / "load.lua"
    script.write_text(lua_script([f"u{n}" for n in range(10)]))
    figures = side_figures(run_wrk(shutil.which("wrk") or "wrk", status_server, script, connections=2, seconds=1))
    assert figures["requests"] > 0 and figures["rps"] > 0
    assert sum(figures["statuses"].values()) == figures["requests"]
    assert set(figures["statuses"]) == {"200", "404", "503"}  # every user of the rotation was asked
    assert figures["5xx"] == figures["statuses"]["503"]
    assert figures["non_2xx"] == figures["statuses"]["503"] + figures["statuses"]["404"]
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]


@pytest.mark.slow
@pytest.mark.ray
@needs_wrk
def test_quick_run_has_every_level_without_5xx(tmp_path: Path) -> None:
    out = tmp_path / "serve_load.json"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    completed = subprocess.run([sys.executable, "-m", "benchmarks.serve_load", "--quick", "--out", str(out)],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [row["connections"] for row in result["levels"]] == result["config"]["levels"] == [1, 32]
    for row in result["levels"]:
        for side in ("noop", "ours"):
            assert row[side]["requests"] > 0, (row["connections"], side)
            assert row[side]["5xx"] == 0, (row["connections"], side, row[side]["statuses"])
    assert result["targets"]["zero_5xx_all_levels"] is True
