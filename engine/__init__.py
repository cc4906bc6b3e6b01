"""recengine: a plugin-based recommendation engine.

A plugin author's public API, as ``import recengine``:

- ``recengine.hookimpl`` marks hook implementations (``register_encoders`` and friends);
- the component base classes and what they receive: ``Encoder``, ``Interactor``, ``Ranker``,
  ``ComponentConfig``, ``Encoded``, ``EncoderContext``, ``FeatureSpec``,
  ``InteractorContext``, ``Candidates``, ``RankContext``, ``Catalog``, ``SegmentPopularity``;
- ``Domain`` and ``SyntheticData`` for domain presets; ``recengine.ranking`` holds the
  helpers the built-in rankers use, ``recengine.testing`` the contract checks;
- the error types (``EngineError``, ``ConfigError``, ``RequestError``, ...), from
  ``recengine.errors``.

Everything but ``hookimpl`` and the errors loads on first use, so that ``import recengine``
stays cheap and the training core imports on machines with only torch, numpy and pyarrow
(``Domain`` needs polars; see ``recengine.train_standalone``).
"""

from importlib import import_module
from typing import Any

from recengine.errors import (
    ComponentUnavailable,
    ConfigError,
    DataError,
    EngineError,
    NotFoundError,
    RequestError,
)
from recengine.hookspecs import hookimpl

_LAZY = {
    **{name: "recengine.components" for name in (
        "Candidates", "Catalog", "ComponentConfig", "Encoded", "Encoder", "EncoderContext", "FeatureSpec",
        "Interactor", "InteractorContext", "RankContext", "Ranker", "SegmentPopularity")},
    "Domain": "recengine.domain",
    "SyntheticData": "recengine.synthetic",
}

__all__ = ["ComponentUnavailable", "ConfigError", "DataError", "EngineError", "NotFoundError", "RequestError",
           "hookimpl", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'recengine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
