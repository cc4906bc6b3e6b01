"""recengine's core: hooks, plugin loading, models, training, evaluation and serving."""

from engine.domain import Domain, SyntheticData
from engine.hookspecs import hookimpl

__all__ = ["Domain", "SyntheticData", "hookimpl"]
