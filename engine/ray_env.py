"""Starting or joining Ray the same way everywhere (serving, distributed training, tests)."""

from __future__ import annotations

import os
from typing import Any

from recengine.errors import ClusterError


def ray_environment() -> None:
    """Defaults for local clusters: no usage stats, token auth stated explicitly (Ray 2.60
    turns it on for local clusters otherwise), and Serve proxies that answer their own errors
    in the API's JSON shape (``recengine.serve.proxy_errors``; every worker inherits the node's
    environment, so no runtime env is needed). Values already set win."""
    from recengine.serve.proxy_errors import proxy_env_vars

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    for name, value in proxy_env_vars().items():
        os.environ.setdefault(name, value)


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs: Any) -> None:
    """Join ``address`` (``auto``, ``ray://…``, ``host:port``) or start a local instance.

    A cluster that cannot be reached raises ``ConnectionError`` naming the address instead
    of hanging.
    """
    import ray

    ray_environment()
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", **kwargs}
    if address:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
        return
    # "local": start our own instance even where other Ray clusters run on this machine
    # (ray.init would otherwise join the newest one and refuse num_cpus)
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), **options)
