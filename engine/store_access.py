"""The CLI's way into a store that ``recengine serve`` may be holding.

DuckDB lets one process hold a store file; while a domain is served, its writer actor does.
So a command that finds the file locked asks the writer instead of failing with "locked":

- :func:`writable_store` — ingest, publish, export, stats go *through* the writer (same
  validation, same transactions; a publish there makes the replicas reload).
- :func:`readable_store` — train and evaluate read a consistent copy the writer makes of the
  whole store (a lock hand-off), deleted when they are done.

Without a running writer the original "locked" error stands (another process holds it).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recengine.feature_store import FeatureStore
from recengine.feature_store.errors import StoreLockedError
from recengine.feature_store.snapshot import SnapshotInfo
from recengine.feature_store.store import IngestResult


class RemoteStore:
    """The operations the CLI runs on a store, forwarded to its writer actor."""

    def __init__(self, handle: Any, path: Path) -> None:
        self.handle = handle
        self.path = path

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import ray

        return ray.get(self.handle.call.remote(method, *args, **kwargs))

    def ingest_paths(self, paths: list[str], kind: str | None = None, **options: Any) -> list[IngestResult]:
        absolute = [str(Path(p).resolve()) for p in paths]  # the writer runs in another directory
        return [IngestResult(**r) for r in self._call("ingest_paths", absolute, kind, **options)]

    def publish(self, root: str | None = None, version: int | None = None,
                history: int | None = None) -> SnapshotInfo:
        return SnapshotInfo(**self._call("publish", _absolute(root), version, history))

    def export_snapshot(self, root: str | None = None, history: int | None = None) -> SnapshotInfo:
        return SnapshotInfo(**self._call("export_snapshot", _absolute(root), history))

    def stats(self) -> dict[str, Any]:
        return dict(self._call("stats"))

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Any of the writer's operations (``WriterActor.call``), e.g. the experiment ones."""
        return self._call(method, *args, **kwargs)

    def close(self) -> None:
        pass

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _absolute(root: str | None) -> str | None:
    return str(Path(root).resolve()) if root else None


def running_writer(path: str | Path, locked: StoreLockedError) -> Any:
    """The writer actor holding ``path``, or re-raise ``locked`` (another process holds it)."""
    import ray

    from recengine.live_writer import WRITER_NAMESPACE, find_writer, writer_address
    from recengine.ray_env import ray_environment

    ray_environment()
    if not ray.is_initialized():
        address = writer_address(path)  # recorded by the writer: never "auto", which fails where several run
        if address is None:
            raise locked
        try:
            ray.init(address=address, namespace=WRITER_NAMESPACE, include_dashboard=False,
                     logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError):
            raise locked from None
    handle = find_writer(path)
    if handle is None:
        raise locked
    return handle


@contextmanager
def writable_store(path: str | Path, read_only: bool = False) -> Iterator[FeatureStore | RemoteStore]:
    """The store opened (read-write unless ``read_only``), or its running writer when serving holds it."""
    try:
        store: FeatureStore | RemoteStore = FeatureStore(path, read_only=read_only)
    except StoreLockedError as locked:
        store = RemoteStore(running_writer(path, locked), Path(path))
    with store:
        yield store


@contextmanager
def readable_store(path: str | Path) -> Iterator[FeatureStore]:
    """The store opened read-only, or a consistent copy of it when serving holds it."""
    try:
        store = FeatureStore(path, read_only=True)
    except StoreLockedError as locked:
        handle = running_writer(path, locked)
        folder = Path(tempfile.mkdtemp(prefix="recengine-store-copy-", dir=Path(path).resolve().parent))
        try:
            import ray

            copy = ray.get(handle.call.remote("copy_to", str(folder / Path(path).name)))
            with FeatureStore(copy, read_only=True) as copied:
                yield copied
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    with store:
        yield store
