"""recengine's own error types: the failures a user causes and can fix.

Only these (and the feature store's ``StoreError``) are *expected*: the CLI prints them as one
line and exits 1, and serving answers them with a 4xx and their message. Any other exception,
a bare ``ValueError`` or ``KeyError`` included, is a bug: the CLI shows its traceback and
serving answers 500 and logs it. Each type also subclasses the builtin it refines
(``ValueError``, ``LookupError``), so ``except ValueError`` around recengine calls keeps working.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every expected engine failure (not a bug): reported as one clear line."""


class ConfigError(EngineError, ValueError):
    """A pipeline config, component parameters or command-line option that cannot be used."""


class DataError(EngineError, ValueError):
    """Data that cannot be trained on or served: an empty split, a missing vector set, a bad snapshot."""


class RequestError(EngineError, ValueError):
    """A recommendation request that cannot be answered as asked (HTTP 422): an unknown filter
    column, a bad filter value, ``k < 1``. Rankers raise it for bad request input."""


class NotFoundError(EngineError, LookupError):
    """A named thing that does not exist: an item, a bundle, a domain (HTTP 404)."""


class ComponentUnavailable(EngineError):
    """A component cannot run here (a missing extra, weights that fail verification...)."""


class UnknownComponentError(NotFoundError):
    """A component name that no loaded plugin registered."""

    def __init__(self, family: str, name: str, known: list[str]) -> None:
        self.family = family
        self.name = name
        self.known = known
        singular = family.rstrip("s")
        super().__init__(f"unknown {singular} {name!r}; known {family}: {', '.join(known) or 'none'}")


class DuplicateComponentError(EngineError, ValueError):
    """A plugin registered a component name another plugin already owns."""


class ClusterError(EngineError, ConnectionError):
    """A Ray cluster that cannot be reached or used (a bad address, no such cluster)."""


class DiskFullError(EngineError, OSError):
    """No space left on the device recengine writes a bundle, checkpoint or snapshot to."""


class AuthenticationError(EngineError):
    """A request that needs an API key and sent none (HTTP 401, ``WWW-Authenticate: Bearer``)."""


class PermissionDeniedError(EngineError):
    """A request whose API key is wrong, revoked or for another domain (HTTP 403)."""
