"""The statistics of online experiments, with the user as the unit.

Requests of one user are not independent (a keen clicker clicks in every session), and
users, not requests, are what an A/B split randomises. So a rate such as CTR is a ratio of
per-user sums, its variance comes from the delta method over users, and the interleaving
test counts users who preferred one arm (a sign test). This is what large experimentation
platforms do; a request-level binomial test would claim significance an A/A test refutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8


@dataclass(frozen=True)
class Ratio:
    """Σ successes / Σ trials over users, with its delta-method variance."""

    value: float | None
    variance: float | None
    users: int
    trials: int

    def interval(self, level: float = 0.95) -> tuple[float | None, float | None]:
        if self.value is None or self.variance is None:
            return None, None
        half = stats.norm.ppf(0.5 + level / 2) * math.sqrt(self.variance)
        return max(0.0, self.value - half), min(1.0, self.value + half)


def ratio(successes: np.ndarray, trials: np.ndarray) -> Ratio:
    """The rate Σs/Σn of per-user counts ``successes`` and ``trials`` (one entry per user)."""
    s, n = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    users, total = len(n), float(n.sum())
    if total == 0:
        return Ratio(None, None, users, 0)
    value = float(s.sum()) / total
    if users < 2:
        return Ratio(value, None, users, int(total))
    mean_n = total / users
    residual = s - value * n
    variance = float(residual.var(ddof=1)) / (users * mean_n ** 2)
    return Ratio(value, variance, users, int(total))


@dataclass(frozen=True)
class Difference:
    difference: float | None
    low: float | None
    high: float | None
    z: float | None
    p_value: float | None


def difference(control: Ratio, candidate: Ratio) -> Difference:
    """Two-sided z-test of candidate − control (independent groups of users)."""
    if None in (control.value, candidate.value, control.variance, candidate.variance):
        diff = None if control.value is None or candidate.value is None else candidate.value - control.value
        return Difference(diff, None, None, None, None)
    assert control.value is not None and candidate.value is not None
    assert control.variance is not None and candidate.variance is not None
    diff = candidate.value - control.value
    se = math.sqrt(control.variance + candidate.variance)
    if se == 0:
        return Difference(diff, diff, diff, None, None if diff == 0 else 0.0)
    z = diff / se
    half = stats.norm.ppf(1 - ALPHA / 2) * se
    return Difference(diff, diff - half, diff + half, z, float(2 * stats.norm.sf(abs(z))))


def planned_trials(baseline: float | None, relative_effect: float, alpha: float = ALPHA,
                   power: float = POWER) -> int | None:
    """Trials per arm for a two-sided test of level ``alpha`` to detect ``baseline`` moving
    by ``relative_effect`` (e.g. 0.05: +5%) with probability ``power``."""
    if baseline is None or not 0 < baseline < 1 or relative_effect <= 0:
        return None
    treated = min(baseline * (1 + relative_effect), 0.999999)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    spread = baseline * (1 - baseline) + treated * (1 - treated)
    return math.ceil(z ** 2 * spread / (treated - baseline) ** 2)


def sign_test(first: int, second: int) -> float | None:
    """Two-sided sign test: p of a split at least this uneven between ``first`` and
    ``second`` when each unit prefers either with probability 1/2."""
    if first + second == 0:
        return None
    return float(stats.binomtest(second, first + second, 0.5).pvalue)
