"""Markdown building blocks shared by the renderers: tables, number formats, verdicts.

Every renderer formats through these, so the same kind of figure reads the same way on every
page (``1.34×`` for a ratio, ``✓ met`` / ``✗ missed`` for a target, thousands separators).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A GitHub markdown table; ``align`` holds one ``l``/``r`` per column (default: left)."""
    marks = ["---:" if (align[i:i + 1] == "r") else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks) + "|"]
    for row in rows:
        cells = [str(cell).replace("|", "\\|").replace("\n", " ") for cell in row]
        if len(cells) != len(headers):
            raise ValueError(f"a row has {len(cells)} cells for {len(headers)} headers: {cells}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fixed(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals and thousands separators; an em dash for a missing one."""
    return "—" if value is None else f"{value:,.{digits}f}"


def count(value: float | None) -> str:
    """A whole number with thousands separators (``305,117``)."""
    return "—" if value is None else f"{value:,.0f}"


def times(value: float | None, digits: int = 2) -> str:
    """A ratio as a multiple (``1.34×``)."""
    return "—" if value is None else f"{value:.{digits}f}×"


def ratio(ours: float, baseline: float) -> float | None:
    """``ours / baseline``; None where the baseline is zero (no ratio to give)."""
    return None if not baseline else ours / baseline


def mean_std(pair: Sequence[float], digits: int = 4) -> str:
    """A ``[mean, std]`` pair as ``0.3227 ± 0.0006``."""
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def verdict(met: bool | None) -> str:
    """A target's outcome: ``✓ met``, ``✗ missed``, or ``—`` where the run did not decide it."""
    return "—" if met is None else ("✓ met" if met else "✗ missed")


def mark(met: bool | None) -> str:
    """The short form of :func:`verdict`, to sit beside a figure (``1.29× ✓``)."""
    return "" if met is None else ("✓" if met else "✗")


def pvalue(p: float) -> str:
    """A p-value readably: ``0.40``, ``0.058``, ``5.2e-59``."""
    if p >= 0.1:
        return f"{p:.2f}"
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.1e}"


def load_average(values: Sequence[float] | None) -> str:
    """The 1-minute load average of a ``[1m, 5m, 15m]`` triple."""
    return "?" if not values else f"{values[0]:.2f}"


def config_line(settings: Mapping[str, Any], skip: Iterable[str] = ()) -> str:
    """The scalar settings of a run as ``key = value`` pairs, in the order the script wrote them.

    Nested settings and absolute paths (where the run happened to keep its files) are left out.
    """
    skipped = set(skip)
    parts = []
    for key, value in settings.items():
        if key in skipped or isinstance(value, Mapping) or (isinstance(value, str) and value.startswith("/")):
            continue
        if isinstance(value, list):
            if any(isinstance(v, (Mapping, list)) for v in value):
                continue
            value = ",".join(str(v) for v in value)
        parts.append(f"{key} = {value}")
    return "; ".join(parts)
