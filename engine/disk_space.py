"""A full disk while writing recengine's own files, as one clear :class:`DiskFullError`.

The writers (safetensors, Parquet, plain files) each report "no space left" their own way:
an ``OSError`` with ``errno.ENOSPC``, or an error of their own type whose message says it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recengine.errors import DiskFullError
from recengine.feature_store.errors import is_disk_full


@contextmanager
def disk_full_is_engine_error(path: str | Path, outcome: str) -> Iterator[None]:
    """Turn "no space left" while writing ``path`` into a :class:`DiskFullError` naming it and
    saying what the failure left (``outcome``); any other error passes unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError(f"no space left on device writing {path}: {outcome}. "
                            f"Free space there and retry ({str(exc).splitlines()[0]})") from exc
