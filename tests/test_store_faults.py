"""The store under faults, with real processes: ``kill -9`` mid-ingest, two writers at once,
and a full disk. In each, the store keeps exactly what it held, and the next writer works."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recengine.bundle import load_bundle
from recengine.feature_store import FeatureStore, OnlineStore, StoreError
from recengine.feature_store.snapshot import default_root
from tests.conftest import generated_shop
from tests.store_contents import assert_same_contents, contents

USERS, ITEMS, EVENTS = 20_000, 5_000, 1_200_000
VARYING = ("ingested_at",)  # the ingest log's clock; every other value must match

needs_proc = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="watches /proc/locks (Linux)")


def _cli(*args: str | Path) -> list[str]:
    """The ``recengine`` command line, run by this interpreter in a process of its own."""
    return [sys.executable, "-c", "from recengine.cli import main; main()", *map(str, args)]


def _start(*args: str | Path) -> subprocess.Popen:
    return subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(*args), capture_output=True, text=True, timeout=300)


def _copy_store(source: Path, target: Path) -> Path:
    """Copy a closed store (its file and WAL, if any) over ``target``."""
    for suffix in ("", ".wal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
    return target


def _wait_until_locked(process: subprocess.Popen, store: Path, timeout: float = 120) -> None:
    """Return once ``process`` holds DuckDB's lock on the store file (an entry of /proc/locks)."""
    inode = store.stat().st_ino

    def locked() -> bool:
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()  # id: POSIX ADVISORY WRITE pid major:minor:inode start end
            if len(fields) >= 6 and fields[4] == str(process.pid) and fields[5].endswith(f":{inode}"):
                return True
        return False

    _wait_for(process, locked, f"locked {store}", timeout)


def _wait_for(process: subprocess.Popen, condition, what: str, timeout: float = 120) -> None:
    """Poll ``condition`` every 5 ms while ``process`` runs; fail if it ends or times out first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before it {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{process.args} never {what}")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A store of users, items and 1,000 events; a Parquet file of 1.2M events (those 1,000
    among them); and the store that ingesting the file into the first one makes, with its
    contents and how much it grew the DuckDB file."""
    root = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(0)
    users = pl.DataFrame({"user_id": [f"u{n}" for n in range(USERS)], "age": rng.integers(18, 80, USERS)})
    items = pl.DataFrame({"item_id": [f"i{n}" for n in range(ITEMS)], "title": [f"item {n}" for n in range(ITEMS)]})
    events = pl.DataFrame({
        "u": rng.integers(0, USERS, EVENTS), "i": rng.integers(0, ITEMS, EVENTS),
        "t": rng.integers(1_600_000_000, 1_700_000_000, EVENTS),
    }).select(
        user_id=pl.concat_str(pl.lit("u"), pl.col("u").cast(pl.String)),
        item_id=pl.concat_str(pl.lit("i"), pl.col("i").cast(pl.String)),
        event_type=pl.lit("view"), value=pl.lit(1.0), ts=pl.from_epoch("t", time_unit="s"),
    )
    events.write_parquet(root / "events.parquet")
    with FeatureStore(root / "base.duckdb") as fs:
        fs.ingest(users)
        fs.ingest(items)
        fs.ingest(events.head(1_000))
    reference = _copy_store(root / "base.duckdb", root / "reference.duckdb")
    with FeatureStore(reference) as fs:
        fs.ingest(root / "events.parquet")
    growth = reference.stat().st_size - (root / "base.duckdb").stat().st_size
    return {"base": root / "base.duckdb", "events": root / "events.parquet", "reference": reference,
            "expected": contents(reference), "growth": growth}


@pytest.fixture
def newcomer(tmp_path: Path) -> Path:
    path = tmp_path / "newcomer.csv"
    path.write_text("user_id,age\nu-new,33\n")
    return path


@needs_proc
@pytest.mark.slow
def test_sigkill_mid_ingest_leaves_the_store_as_it_was(big: dict, tmp_path: Path) -> None:
    """``kill -9`` of ``recengine store ingest`` of 1.2M events, at points from reading the
    file to writing its rows into the DuckDB file: each time the store holds exactly what it
    held (the unfinished transaction is discarded on open) and opens for writing at once (the
    lock is the operating system's and died with the process: none is ever left stale). The
    next ingest then gives what an uninterrupted one gives."""
    store, size = tmp_path / "store.duckdb", big["base"].stat().st_size
    before = contents(_copy_store(big["base"], store))
    opened = 0.0

    def written(share: float):  # the rows being written: the file has grown by share of what they take
        return lambda: store.stat().st_size - size >= share * big["growth"]

    points = {"reading the file": lambda: True, "validating": lambda: time.monotonic() - opened > 0.1,
              "writing, 10% in": written(0.1), "writing, 60% in": written(0.6)}
    for point, reached in points.items():
        _copy_store(big["base"], store)  # each kill starts from the same file, so growth means the same
        ingest = _start("store", "ingest", big["events"], "--store", store)
        _wait_until_locked(ingest, store)
        opened = time.monotonic()
        _wait_for(ingest, reached, f"reached {point}")
        ingest.send_signal(signal.SIGKILL)
        ingest.communicate(timeout=60)
        assert ingest.returncode == -signal.SIGKILL, point
        assert_same_contents(before, contents(store))  # contents() opens it for writing

    done = _run("store", "ingest", big["events"], "--store", store, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["rows_added"] == EVENTS - 1_000
    assert_same_contents(big["expected"], contents(store), ignore=VARYING)


@needs_proc
def test_sigkill_after_a_commit_keeps_it_from_the_wal(tmp_path: Path, small_frames) -> None:
    """A committed ingest that was never checkpointed lives in DuckDB's WAL; killed then,
    the next open replays it."""
    store = tmp_path / "store.duckdb"
    with FeatureStore(store) as fs:
        fs.ingest(small_frames["users"])
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        import polars as pl
        from recengine.feature_store import FeatureStore
        fs = FeatureStore({str(store)!r})
        fs.ingest(pl.DataFrame({{"user_id": ["u9"], "age": [99]}}))
        print("committed", flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "committed", holder.stderr.read()
    assert Path(f"{store}.wal").stat().st_size > 0
    holder.kill()
    holder.communicate(timeout=60)
    with FeatureStore(store) as fs:
        assert fs.latest("users").filter(pl.col("user_id") == "u9").select("age", "city").rows() == [(99, None)]
        assert fs.stats()["users"] == 4


@needs_proc
@pytest.mark.slow
def test_two_ingests_at_once_one_wins_the_other_is_told_who_holds_the_store(
        big: dict, tmp_path: Path, newcomer: Path) -> None:
    """The first ingest is frozen (SIGSTOP) mid-way, holding the store, while the second runs."""
    store = _copy_store(big["base"], tmp_path / "store.duckdb")
    first = _start("store", "ingest", big["events"], "--store", store)
    _wait_until_locked(first, store)
    first.send_signal(signal.SIGSTOP)
    try:
        second = _run("store", "ingest", newcomer, "--store", store)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert f"store {store} is locked by PID {first.pid}" in second.stderr, second.stderr
    assert "Retry when that process has finished" in second.stderr
    _, error = first.communicate(timeout=300)
    assert first.returncode == 0, error
    assert_same_contents(big["expected"], contents(store), ignore=VARYING)  # nothing lost

    assert _run("store", "ingest", newcomer, "--store", store).returncode == 0  # the retry goes in
    with FeatureStore(store) as fs:
        assert fs.latest("users").filter(pl.col("user_id") == "u-new")["age"].to_list() == [33]
        assert fs.stats()["events"] == EVENTS


@needs_proc
@pytest.mark.slow
def test_ingest_while_publish_runs_is_refused_and_the_publish_completes(
        big: dict, tmp_path: Path, newcomer: Path) -> None:
    """The publish is frozen (SIGSTOP) mid-way, holding the store, while the ingest runs."""
    store = _copy_store(big["reference"], tmp_path / "store.duckdb")
    before = dict(big["expected"])
    publish = _start("store", "publish", "--store", store, "--json")
    _wait_until_locked(publish, store)
    publish.send_signal(signal.SIGSTOP)
    try:
        ingest = _run("store", "ingest", newcomer, "--store", store)
    finally:
        publish.send_signal(signal.SIGCONT)
    assert ingest.returncode == 1 and f"store {store} is locked by PID {publish.pid}" in ingest.stderr, ingest.stderr
    output, error = publish.communicate(timeout=300)
    assert publish.returncode == 0, error
    info = json.loads(output)
    assert info["version"] == 1 and info["counts"]["events"] == EVENTS
    online = OnlineStore(default_root(store))
    assert online.version == 1 and online.user("u0") is not None and online.user("u-new") is None
    after = contents(store)
    assert after.pop("store_meta").filter(pl.col("key") == "snapshot_version")["value"].item() == "1"
    before.pop("store_meta")
    assert_same_contents(before, after)  # the refused ingest wrote nothing
    assert _run("store", "ingest", newcomer, "--store", store).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 32 MiB tmpfs (we mount it where we may: as root, with mount(8)); unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {disk}: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file (removed to free the disk again)."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def _no_space(path: Path, outcome: str) -> str:
    return re.escape(f"no space left on device writing {path}: {outcome}")


def test_full_disk_fails_cleanly_and_the_published_snapshot_still_serves(small_disk: Path, small_frames) -> None:
    store, root = small_disk / "store.duckdb", small_disk / "snaps"
    rng = np.random.default_rng(1)
    n = 300_000  # several MiB in DuckDB: more than any free block left inside the file
    more = pl.DataFrame({
        "user_id": rng.choice(["u1", "u2", "u3"], n), "item_id": rng.choice(["i1", "i2", "i3", "i4"], n),
        "ts": pl.from_epoch(pl.Series(rng.integers(1_700_000_000, 1_800_000_000, n)), time_unit="s"),
    })
    with FeatureStore(store) as fs:
        for kind in ("users", "items", "events"):
            fs.ingest(small_frames[kind])
        assert fs.publish(root).version == 1
        before = contents(fs)
        filler = _fill(small_disk)
        for rows, failing in ((more, f"{store}"), (more.head(5_000), f"{store}.wal")):  # rows; the commit
            with pytest.raises(StoreError, match=_no_space(store, "the store is unchanged")) as caught:
                fs.ingest(rows)
            assert f'Could not write file "{failing}": No space left on device' in str(caught.value)
        with pytest.raises(StoreError, match=_no_space(root, "no snapshot was written")):
            fs.publish(root)
    assert_same_contents(before, contents(store))
    assert sorted(p.name for p in root.iterdir()) == ["CURRENT", "v000001"]  # no half-written version
    online = OnlineStore(root)
    assert online.version == 1 and online.user("u1").history == ["i1", "i2", "i3"]

    filler.unlink()  # with space again, both work
    with FeatureStore(store) as fs:
        assert fs.ingest(more).rows_added == n
        assert fs.publish(root).version == 2


@pytest.mark.slow
def test_training_on_a_full_disk_fails_cleanly_and_writes_no_version(small_disk: Path, tmp_path: Path) -> None:
    """`recengine train --models` on a full tmpfs: exit 1, one line naming the bundle folder,
    no version (nor its staging folder) left; with space again the same command trains v1."""
    store = generated_shop(tmp_path / "shop", 120, 80, 2_000, 4)
    models = small_disk / "models"
    train = ("train", "--store", store, "--models", models, "--name", "tiny", "--domain", "ecommerce",
             "--user-encoder", "dense", "--item-encoder", "dense", "--objective", "bpr", "--protocol", "gen",
             "--epochs", "1", "--batch-size", "256", "--json")
    (models / "tiny").mkdir(parents=True)
    filler = _fill(small_disk)
    failed = _run(*train)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert re.search(_no_space(models / "tiny", "no bundle version was written"), " ".join(failed.stderr.split()))
    assert list((models / "tiny").iterdir()) == []  # no version, no staging folder

    filler.unlink()
    done = _run(*train)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bundle"] == str(models / "tiny" / "1")
    assert load_bundle("tiny", models).version == 1


def test_preparing_a_domain_again_refuses_while_its_store_is_held(tmp_path: Path) -> None:
    """`recengine quickstart` replaces a domain's store: under a running writer (`recengine serve`)
    its live writes would go to a deleted file, so it refuses and leaves the store alone."""
    from recengine.errors import ConfigError
    from recengine.project import prepare_domain

    prepared = prepare_domain(tmp_path, "ecommerce", users=60, items=40, events=600, epochs=1, progress=False)
    store = prepared.paths["store"]
    before = contents(store)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from recengine.feature_store import FeatureStore
        store = FeatureStore({str(store)!r})
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"in use \(PID {holder.pid}\).*stop it"):
            prepare_domain(tmp_path, "ecommerce", users=60, items=40, events=600, epochs=1, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert_same_contents(before, contents(store))
