"""recengine's core: hooks, plugin loading, models, training, evaluation and serving.

``Domain`` and ``SyntheticData`` load on first use (they need polars), so that the training
core imports on machines with only torch, numpy and pyarrow (see ``recengine.train_standalone``).
"""

from typing import Any

from recengine.hookspecs import hookimpl

__all__ = ["Domain", "SyntheticData", "hookimpl"]


def __getattr__(name: str) -> Any:
    if name in ("Domain", "SyntheticData"):
        from recengine import domain

        return getattr(domain, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
