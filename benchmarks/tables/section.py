"""What a renderer hands back: one page section and the headline rows it offers the README."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from benchmarks.tables.markdown import load_average


@dataclass(frozen=True)
class Headline:
    """One README headline row: a figure beside its baseline from the same run, and its target."""

    benchmark: str
    figure: str
    ours: str
    baseline: str
    target: str


@dataclass(frozen=True)
class Section:
    """A benchmark's section of docs/benchmarks.md.

    ``measures`` says in a sentence or two what the benchmark measures, ``command`` is the
    command that wrote the results file, ``body`` its tables (markdown), and ``headline`` the
    rows the README's short table takes from it.
    """

    title: str
    measures: str
    command: str
    body: str
    headline: tuple[Headline, ...] = field(default=())


DATE_KEYS = ("date", "created_at", "started_at", "created")
LOAD_START_KEYS = ("loadavg_start", "load_average_start", "loadavg_at_start", "load_average_before")
LOAD_END_KEYS = ("loadavg_end", "load_average_end", "load_average_after")
VERSION_KEYS = {"python": "Python", "torch": "torch", "numpy": "numpy", "duckdb": "DuckDB", "polars": "polars"}


def run_date(data: Mapping[str, Any]) -> str | None:
    """When the run happened, as the results file records it (the first date key it has)."""
    for key in DATE_KEYS:
        if isinstance(data.get(key), str):
            return str(data[key])
    return None


def readable_date(stamp: str) -> str:
    """``2026-11-28T12:37:22+00:00`` as ``2026-11-28 12:37 UTC``; a plain date as it is."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if len(stamp) <= 10:
        return stamp
    offset = moment.utcoffset()
    zone = " UTC" if offset is not None and not offset.total_seconds() else (moment.strftime(" %z") if offset else "")
    return moment.strftime("%Y-%m-%d %H:%M") + zone


def _first(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    return next((mapping[k] for k in keys if k in mapping), None)


def run_facts(data: Mapping[str, Any]) -> str:
    """The run's date, machine and load average, in one line, from whatever keys the file uses."""
    parts = []
    stamp = run_date(data)
    if stamp:
        parts.append(readable_date(stamp))
    machine = data.get("machine")
    load_start = _first(data, LOAD_START_KEYS)
    load_end = _first(data, LOAD_END_KEYS)
    if isinstance(machine, Mapping):
        described = []
        if "cpus" in machine:
            described.append(f"{machine['cpus']} CPUs")
        if "platform" in machine:
            described.append(str(machine["platform"]))
        described += [f"{name} {machine[key]}" for key, name in VERSION_KEYS.items() if key in machine]
        parts.append(", ".join(described))
        load_start = _first(machine, LOAD_START_KEYS) if load_start is None else load_start
        load_end = _first(machine, LOAD_END_KEYS) if load_end is None else load_end
    elif isinstance(machine, str):
        parts.append(machine)
    loads = [f"{load_average(value)} at the {when}" for value, when in ((load_start, "start"), (load_end, "end"))
             if value is not None]
    if loads:
        parts.append("load average " + ", ".join(loads))
    return " · ".join(parts)
