"""The section of a results file no renderer knows yet: its configuration and top-level figures.

A new benchmark's JSON is never skipped silently: it appears on the page in this plain form
(and the command line names it) until someone writes it a renderer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import config_line, table, verdict
from benchmarks.tables.section import DATE_KEYS, Section

CONFIG_KEYS = ("config", "settings")
SKIPPED = {"benchmark", "machine", "markdown", *DATE_KEYS, *CONFIG_KEYS}


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return verdict(value)
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, (int, str)):
        return f"{value:,}" if isinstance(value, int) else value
    return None


def _flat(prefix: str, value: Any) -> list[tuple[str, str]]:
    """Scalar leaves of a nested mapping as ``a.b.c`` keys (lists and deeper structures left out)."""
    if isinstance(value, Mapping):
        return [pair for key, inner in value.items()
                for pair in _flat(f"{prefix}.{key}" if prefix else str(key), inner)]
    shown = _scalar(value)
    return [] if shown is None else [(prefix, shown)]


def render(name: str, data: Mapping[str, Any]) -> Section:
    parts = []
    config = next((data[k] for k in CONFIG_KEYS if isinstance(data.get(k), Mapping)), None)
    if config:
        parts.append(f"Configuration: {config_line(config)}.")
    figures = [(key, shown) for key, value in data.items() if key not in SKIPPED and not isinstance(value, Mapping)
               for shown in [_scalar(value)] if shown is not None]
    if figures:
        parts.append(table(["figure", "value"], figures, "lr"))
    targets = _flat("", data.get("targets", {}))
    if targets:
        parts += ["**Targets**", table(["target", "value"], targets, "lr")]
    if not parts:
        parts.append("The file has no top-level figures, configuration or targets to show.")
    return Section(
        title=f"{name} (no renderer yet)",
        measures=f"`benchmarks/results/{name}.json` has no renderer in `benchmarks/tables/` yet, so this section "
                 "shows only its configuration and top-level figures; its full tables need one.",
        command=str(data.get("command", f"see benchmarks/{name}.py")),
        body="\n\n".join(parts),
    )
