"""kill -9 of the store's writer in the middle of a stream of acknowledged batches.

A driver process appends event batches (client event ids, each batch its own user) through
a :class:`StoreWriter` and prints every ack as soon as it has it. The test kills it at some
point, reopens the store and checks: every acknowledged batch is stored exactly once, no
batch is half-applied, the live log is contiguous and matches the events; a new writer opens
the file (no stale lock), and retrying the batches that were in flight stores each once.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from recengine.feature_store import FeatureStore
from recengine.feature_store.live_log import LiveAck, LiveBatch
from recengine.live_writer import StoreWriter

ITEMS = [f"i{n}" for n in range(20)]
BATCH_EVENTS = 4
WATCHDOG_S = 120


def live_batch(name: str) -> LiveBatch:
    """The batch called ``name``: BATCH_EVENTS events of user ``name``, event ids ``name-<k>``."""
    return LiveBatch("events", [{"user_id": name, "item_id": ITEMS[(len(name) + k) % len(ITEMS)],
                                 "event_id": f"{name}-{k}", "ts": "2024-05-01T12:00:00Z"}
                                for k in range(BATCH_EVENTS)])


DRIVER = f'''
"""Append event batches through a StoreWriter forever, printing each ack once it is durable."""
import json
import sys
import threading
from concurrent.futures import as_completed

from recengine.feature_store.live_log import LiveBatch
from recengine.live_writer import StoreWriter

ITEMS = {ITEMS!r}
BATCH_EVENTS = {BATCH_EVENTS}
{inspect.getsource(live_batch)}
store, mode, threads, burst = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
writer = StoreWriter(store)
printing = threading.Lock()


def say(**line):
    with printing:
        print(json.dumps(line), flush=True)


def acknowledged(name, ack):
    assert ack.accepted == BATCH_EVENTS, ack
    say(ack=name, seq=ack.seq, event_ids=[e["event_id"] for e in live_batch(name).records], groups=writer.groups)


def one_at_a_time(t):
    for n in range(10**9):
        name = f"t{{t}}-b{{n}}"
        say(sent=name)
        acknowledged(name, writer.append(live_batch(name)))


def bursts(t):
    """``burst`` batches submitted at once (one group commit), then waited for."""
    for round in range(10**9):
        names = [f"t{{t}}-r{{round}}-b{{n}}" for n in range(burst)]
        for name in names:
            say(sent=name)
        futures = {{writer.submit(live_batch(name)): name for name in names}}
        for future in as_completed(futures):
            acknowledged(futures[future], future.result())


work = one_at_a_time if mode == "threads" else bursts
for t in range(threads):
    threading.Thread(target=work, args=(t,), daemon=True).start()
say(started=True)
threading.Event().wait()
'''


@dataclass
class Stream:
    """What the driver printed before it died: batches sent, and acks (name → seq, event ids)."""

    sent: set[str] = field(default_factory=set)
    acks: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    most_groups: int = 0

    def read(self, line: str) -> None:
        try:
            message = json.loads(line)
        except ValueError:  # a line cut short by the kill
            return
        if "sent" in message:
            self.sent.add(message["sent"])
        elif "ack" in message:
            self.acks[message["ack"]] = (message["seq"], message["event_ids"])
            self.most_groups = max(self.most_groups, message["groups"])

    @property
    def in_flight(self) -> set[str]:
        return self.sent - set(self.acks)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A store with the driver's items and a few users (new users come with the batches)."""
    path = tmp_path / "store.duckdb"
    with FeatureStore(path) as store:
        store.ingest(pl.DataFrame({"user_id": ["u1", "u2"]}), "users")
        store.ingest(pl.DataFrame({"item_id": ITEMS, "title": [f"item {n}" for n in range(len(ITEMS))]}), "items")
    return path


def run_and_kill(tmp_path: Path, store: Path, mode: str, threads: int, burst: int, kill_after: int) -> Stream:
    """Start the driver, read its acks until ``kill_after`` of them, SIGKILL it, and read what
    it had printed before it died."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    errors = (tmp_path / "driver.err").open("w")
    process = subprocess.Popen([sys.executable, str(driver), str(store), mode, str(threads), str(burst)],
                               stdout=subprocess.PIPE, stderr=errors, text=True)
    watchdog = threading.Timer(WATCHDOG_S, process.kill)
    watchdog.start()
    stream = Stream()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            stream.read(line)
            if len(stream.acks) >= kill_after:
                os.kill(process.pid, signal.SIGKILL)
                break
        for line in process.stdout:  # acks printed before the kill are acks too
            stream.read(line)
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()
        errors.close()
    assert len(stream.acks) >= kill_after, (tmp_path / "driver.err").read_text()[-3000:]
    assert process.returncode == -signal.SIGKILL
    return stream


def check_store(store: Path, stream: Stream) -> dict[str, int]:
    """The store after the kill: acknowledged batches once, nothing half-applied, the log
    contiguous and matching the events. Returns the sequence number of each stored batch."""
    with FeatureStore(store) as opened:
        counts = dict(opened.sql("SELECT user_id, count(*) FROM events WHERE user_id LIKE 't%' GROUP BY 1").iter_rows())
        ids = opened.sql("SELECT event_id, seq FROM live_event_ids")
        log = opened.sql("SELECT seq, kind, records FROM live_log ORDER BY seq")
        live_seq = int(opened.sql("SELECT value FROM store_meta WHERE key = 'live_seq'")["value"][0])
        users = set(opened.sql("SELECT user_id FROM users WHERE user_id LIKE 't%'")["user_id"])
        changes = opened.changes_since(0, limit=1_000_000)

    assert set(counts.values()) <= {BATCH_EVENTS}, "a batch is half-applied"
    assert users == set(counts), "a batch's user without its events, or events without their user"
    batch_of = {event_id: event_id.rsplit("-", 1)[0] for event_id in ids["event_id"]}
    stored: dict[str, int] = {}
    for event_id, seq in ids.iter_rows():
        assert stored.setdefault(batch_of[event_id], seq) == seq, f"{event_id}: one batch under two seqs"
    assert set(stored) == set(counts), "event ids recorded for events not stored, or the other way round"
    assert set(stored) <= stream.sent, "a batch stored that was never sent"

    for name, (seq, event_ids) in stream.acks.items():
        assert counts.get(name) == BATCH_EVENTS, f"acknowledged batch {name} (seq {seq}) lost"
        assert {e: stored.get(batch_of.get(e, "")) for e in event_ids} == dict.fromkeys(event_ids, seq)

    assert log["seq"].to_list() == list(range(1, live_seq + 1)), "the live log has a gap"
    assert set(log["kind"]) <= {"events"} and set(log["records"]) <= {BATCH_EVENTS}
    assert sorted(stored.values()) == log["seq"].to_list(), "log entries and stored batches differ"
    for change in changes:  # each log entry holds exactly its batch's events
        users_in = set(change.frame["user_id"])
        assert len(users_in) == 1 and stored[users_in.pop()] == change.seq
    return stored


def retry_in_flight(store: Path, stream: Stream, stored: dict[str, int]) -> None:
    """A new writer opens the file; retrying each batch that was in flight stores it once."""
    writer = StoreWriter(store)
    try:
        for name in sorted(stream.in_flight):
            ack = writer.append(live_batch(name), timeout=60)
            assert isinstance(ack, LiveAck), ack
            if name in stored:  # it had committed: the retry is a duplicate, answered with its seq
                assert (ack.seq, ack.accepted, ack.duplicates) == (stored[name], 0, BATCH_EVENTS)
            else:
                assert (ack.accepted, ack.duplicates) == (BATCH_EVENTS, 0)
        fresh = writer.append(live_batch("after-restart"), timeout=60)
        assert isinstance(fresh, LiveAck) and fresh.seq == writer.live_state().seq
        counts = dict(writer.store.sql(
            "SELECT user_id, count(*) FROM events WHERE user_id LIKE 't%' GROUP BY 1").iter_rows())
    finally:
        writer.close()
    assert set(counts) == stream.sent and set(counts.values()) == {BATCH_EVENTS}


@pytest.mark.parametrize("kill_after", [1, 30, 90])
def test_kill_9_one_batch_at_a_time_from_threads(tmp_path: Path, shop: Path, kill_after: int) -> None:
    stream = run_and_kill(tmp_path, shop, "threads", threads=4, burst=1, kill_after=kill_after)
    stored = check_store(shop, stream)
    retry_in_flight(shop, stream, stored)


@pytest.mark.parametrize("kill_after", [1, 45, 150])
def test_kill_9_during_group_commits(tmp_path: Path, shop: Path, kill_after: int) -> None:
    stream = run_and_kill(tmp_path, shop, "bursts", threads=2, burst=40, kill_after=kill_after)
    stored = check_store(shop, stream)
    if kill_after > 1:
        assert stream.most_groups < len(stream.acks)  # many batches per commit, not one each
    retry_in_flight(shop, stream, stored)
