"""Errors the feature store raises: each says where the problem is and what was expected."""

from __future__ import annotations

import errno


class StoreError(Exception):
    """Base class of every feature-store error.

    Errors cross process boundaries (the writer actor answers a refused batch with its error):
    they pickle with their message and fields, whatever their ``__init__`` takes.
    """

    def __reduce__(self) -> tuple[object, ...]:
        return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type[StoreError], args: tuple[object, ...], state: dict[str, object]) -> StoreError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class IngestError(StoreError):
    """Input that cannot be ingested; names the source, row, column and what was expected.

    ``row`` is the 1-based line number in text files (the header is line 1) and the
    1-based data row in Parquet files and frames.
    """

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
        expected: str | None = None,
        row_label: str = "row",
    ) -> None:
        self.source = source
        self.problem = problem
        self.row = row
        self.column = column
        self.expected = expected
        where = [source]
        if row is not None:
            where.append(f"{row_label} {row}")
        if column is not None:
            where.append(f"column {column!r}")
        message = f"{', '.join(where)}: {problem}"
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)


class UnknownEntitiesError(IngestError):
    """Events that name users or items the store does not have."""

    def __init__(self, source: str, kind: str, count: int, examples: list[str]) -> None:
        self.kind = kind
        self.count = count
        self.examples = examples
        column = "user_id" if kind == "users" else "item_id"
        super().__init__(
            source,
            f"{count} event(s) name {kind} not in the store, e.g. {examples}",
            column=column,
            expected=f"ingest the {kind} first, or pass create_missing=True (--create-missing)",
        )


class StoreLockedError(StoreError):
    """The DuckDB file is held open by another process (an ingest, a publish, a reader).

    Names the store and the holder's PID, and what to do: the lock is the operating
    system's and ends with that process, so waiting for it (or stopping it) is enough.
    """

    def __init__(self, path: str, pid: int | None, detail: str) -> None:
        self.path = path
        self.pid = pid
        holder = f"PID {pid}" if pid is not None else "another process"
        super().__init__(
            f"store {path} is locked by {holder}: only one process may open it for writing. "
            f"Retry when that process has finished (or stop it); nothing was changed. "
            f"To read meanwhile, use a published snapshot ({detail.splitlines()[0]})"
        )


class SchemaError(StoreError):
    """A store or schema declaration problem (wrong domain, unknown column...)."""


class SnapshotError(StoreError):
    """A snapshot that cannot be loaded (a missing or damaged file, counts that disagree with
    its manifest, a ``CURRENT`` naming no version); names the snapshot, the file and the fault."""

    def __init__(self, snapshot: str, file: str, problem: str) -> None:
        self.snapshot = snapshot
        self.file = file
        self.problem = problem
        super().__init__(f"snapshot {snapshot}: {file} {problem}")

    def __reduce__(self) -> tuple[type[SnapshotError], tuple[str, str, str]]:
        return type(self), (self.snapshot, self.file, self.problem)  # pickles across processes (Ray)


def is_disk_full(exc: BaseException) -> bool:
    """True for any writer's "no space left on device" error (an ``OSError`` with ENOSPC, or a
    DuckDB, safetensors or Parquet error whose message says so): the one test for a full disk."""
    return getattr(exc, "errno", None) == errno.ENOSPC or "no space left" in str(exc).lower()
