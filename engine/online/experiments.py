"""Experiments on live traffic: which arm a user sees (A/B), and team-draft interleaving.

An A/B experiment routes each user to one arm by a hash of the experiment id and the user
id, so a user always sees the same arm and the split holds whatever replica answers. An
interleaving experiment shows every request one list drawn from both arms' rankings by team
draft (Radlinski, Kurup and Joachims, 2008): each arm in turn adds its best item not yet
shown, the arm that picks first chosen by a fair coin per round; a click credits the arm
that contributed the item. Interleaving needs far fewer users to detect a ranking change.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from recengine.errors import ConfigError
from recengine.online.schemas import ArmSpec, ExperimentSpec

MODES = ("ab", "interleave")
ARM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
DEFAULT_MIN_EFFECT = 0.05  # a +5% relative CTR lift


def new_experiment(domain: str, arms: list[tuple[str, str]], split: list[float] | None = None,
                   mode: str = "ab", min_effect: float = DEFAULT_MIN_EFFECT,
                   now: datetime | None = None) -> ExperimentSpec:
    """An experiment of ``arms`` (name, bundle label), checked: two or more arms with
    distinct names, a split of positive shares (A/B; default even), a known mode."""
    if mode not in MODES:
        raise ConfigError(f"unknown experiment mode {mode!r}; expected one of {list(MODES)}")
    if len(arms) < 2:
        raise ConfigError("an experiment needs at least two arms, e.g. --arm control=news/3 --arm candidate=news/4")
    names = [name for name, _ in arms]
    for name in names:
        if not ARM_NAME.fullmatch(name):
            raise ConfigError(f"arm name {name!r}: expected a letter, then up to 31 letters, digits, _ or -")
    if len(set(names)) < len(names):
        raise ConfigError(f"arm names must differ; got {names}")
    if mode == "interleave" and len(arms) != 2:
        raise ConfigError("team-draft interleaving compares exactly two arms")
    split = split or [1.0] * len(arms)
    if len(split) != len(arms):
        raise ConfigError(f"--split has {len(split)} shares for {len(arms)} arms")
    if any(not share > 0 for share in split):
        raise ConfigError(f"--split shares must be positive; got {split}")
    if not 0 < min_effect < 10:
        raise ConfigError(f"--min-effect {min_effect}: expected a relative lift such as 0.05 (+5%)")
    total = sum(split)
    now = now or datetime.now(UTC)
    return ExperimentSpec(
        id=f"{domain}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}", domain=domain, mode=mode,
        arms=[ArmSpec(name=name, bundle=bundle, weight=round(share / total, 6))
              for (name, bundle), share in zip(arms, split)],
        started_at=now.isoformat(), min_effect=min_effect)


def unit_hash(experiment_id: str, unit: str) -> float:
    """A uniform number in [0, 1) fixed by the experiment and the unit (a user id)."""
    digest = hashlib.sha256(f"{experiment_id}\x00{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def assign(spec: ExperimentSpec, unit: str) -> str:
    """The arm ``unit`` sees in an A/B experiment (always the same one)."""
    point, edge = unit_hash(spec.id, unit), 0.0
    for arm in spec.arms:
        edge += arm.weight
        if point < edge:
            return arm.name
    return spec.arms[-1].name


@dataclass(frozen=True)
class Drafted:
    """One interleaved list: item ids in order and the arm that contributed each."""

    items: list[str]
    teams: list[str]


def team_draft(rankings: dict[str, list[str]], k: int, seed: str) -> Drafted:
    """Team-draft interleaving of two arms' rankings into at most ``k`` items.

    Each round both arms pick once, the first picker chosen by a coin fixed by ``seed``
    (the request id) and the round; an arm picks its highest-ranked item not yet in the list.
    """
    (first, a), (second, b) = rankings.items()
    items: list[str] = []
    teams: list[str] = []
    shown: set[str] = set()
    cursors = {first: 0, second: 0}
    lists: dict[str, list[Any]] = {first: a, second: b}
    round_no = 0
    while len(items) < k:
        order = (first, second) if unit_hash(seed, str(round_no)) < 0.5 else (second, first)
        picked = False
        for team in order:
            if len(items) >= k:
                break
            ranking, cursor = lists[team], cursors[team]
            while cursor < len(ranking) and ranking[cursor] in shown:
                cursor += 1
            cursors[team] = cursor
            if cursor < len(ranking):
                items.append(ranking[cursor])
                teams.append(team)
                shown.add(ranking[cursor])
                cursors[team] = cursor + 1
                picked = True
        if not picked:
            break
        round_no += 1
    return Drafted(items, teams)
