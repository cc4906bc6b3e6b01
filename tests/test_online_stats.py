"""The statistics and routing of online experiments, against hand-computed cases and
simulated A/A experiments (the test must hold its nominal 5% false-positive rate)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recengine.errors import ConfigError
from recengine.online import stats
from recengine.online.experiments import assign, new_experiment, team_draft


def test_ratio_is_the_pooled_rate_with_the_delta_method_variance() -> None:
    clicks, requests = np.array([1, 0, 3, 2]), np.array([2, 1, 4, 3])
    found = stats.ratio(clicks, requests)
    assert found.value == pytest.approx(6 / 10)
    # delta method by hand: residuals s - R n = [-0.2, -0.6, 0.6, 0.2], their sample variance
    # 0.2667, over N * mean(n)^2 = 4 * 2.5^2
    residual = np.array([-0.2, -0.6, 0.6, 0.2])
    assert found.variance == pytest.approx(residual.var(ddof=1) / (4 * 2.5 ** 2))
    low, high = found.interval()
    assert low == pytest.approx(0.6 - 1.959964 * math.sqrt(found.variance), abs=1e-6)  # type: ignore[arg-type]
    assert high == pytest.approx(min(1.0, 0.6 + 1.959964 * math.sqrt(found.variance)), abs=1e-6)  # type: ignore[arg-type]


def test_ratio_without_data_or_with_one_user_has_no_interval() -> None:
    assert stats.ratio(np.array([]), np.array([])).value is None
    one = stats.ratio(np.array([1]), np.array([4]))
    assert one.value == 0.25 and one.variance is None and one.interval() == (None, None)


def test_planned_sample_matches_the_textbook_formula() -> None:
    # p1 = 0.10, +10% relative: (1.95996 + 0.84162)^2 (0.1*0.9 + 0.11*0.89) / 0.01^2 = 14,748.1
    assert stats.planned_trials(0.10, 0.10) == 14_749
    assert stats.planned_trials(None, 0.1) is None and stats.planned_trials(0.0, 0.1) is None


def test_sign_test_against_the_binomial_by_hand() -> None:
    assert stats.sign_test(0, 10) == pytest.approx(2 * 0.5 ** 10)
    assert stats.sign_test(5, 5) == pytest.approx(1.0)
    assert stats.sign_test(0, 0) is None


def _clustered_experiment(rng: np.random.Generator, users: int, lift: float) -> tuple[stats.Ratio, stats.Ratio]:
    """Users with their own click propensity (Beta) and request counts (geometric): clicks
    of one user are correlated, as on a real site."""
    arms = []
    for effect in (1.0, 1.0 + lift):
        propensity = np.clip(rng.beta(0.5, 4.0, users) * effect, 0, 1)
        requests = rng.geometric(0.15, users)
        clicks = rng.binomial(requests, propensity)
        arms.append(stats.ratio(clicks, requests))
    return arms[0], arms[1]


def test_aa_experiments_reject_at_the_nominal_rate_and_a_real_lift_is_found() -> None:
    rng = np.random.default_rng(7)
    runs = 400
    rejected = sum(stats.difference(*_clustered_experiment(rng, 400, 0.0)).p_value < 0.05 for _ in range(runs))  # type: ignore[operator]
    assert 0.025 <= rejected / runs <= 0.08, rejected / runs  # nominal 5%; binomial noise of 400 runs ~ ±2.2%
    found = sum(stats.difference(*_clustered_experiment(rng, 4000, 0.15)).p_value < 0.05 for _ in range(50))  # type: ignore[operator]
    assert found >= 40  # +15% with 4,000 users per arm: power well above 80%


def test_assignment_is_stable_per_user_and_follows_the_split() -> None:
    spec = new_experiment("news", [("control", "news/1"), ("candidate", "news/2")], [70, 30])
    users = [f"u{i}" for i in range(20_000)]
    arms = [assign(spec, user) for user in users]
    assert arms == [assign(spec, user) for user in users]
    assert arms.count("control") / len(users) == pytest.approx(0.7, abs=0.015)
    other = new_experiment("news", [("control", "news/1"), ("candidate", "news/2")], [70, 30])
    assert other.id != spec.id
    moved = sum(a != assign(other, u) for a, u in zip(arms, users))
    assert moved > 0.3 * len(users)  # a new experiment reshuffles users (no carry-over between experiments)


@pytest.mark.parametrize(("arms", "split", "mode", "message"), [
    ([("control", "news/1")], None, "ab", "at least two arms"),
    ([("a", "news/1"), ("a", "news/2")], None, "ab", "must differ"),
    ([("a", "news/1"), ("b", "news/2")], [50], "ab", "2 arms"),
    ([("a", "news/1"), ("b", "news/2")], [50, 0], "ab", "positive"),
    ([("a", "news/1"), ("b", "news/2"), ("c", "news/3")], None, "interleave", "exactly two"),
    ([("a", "news/1"), ("b", "news/2")], None, "bandit", "unknown experiment mode"),
    ([("1a", "news/1"), ("b", "news/2")], None, "ab", "arm name"),
])
def test_bad_experiments_are_refused_with_a_reason(arms: list[tuple[str, str]], split: list[float] | None,
                                                   mode: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        new_experiment("news", arms, split, mode)


def test_team_draft_keeps_each_arms_order_and_shows_no_item_twice() -> None:
    a = ["i1", "i2", "i3", "i4", "i5", "i6"]
    b = ["i3", "i7", "i1", "i8", "i9", "i2"]
    for seed in ("r1", "r2", "r3", "r4"):
        drafted = team_draft({"A": a, "B": b}, 6, seed)
        assert len(drafted.items) == 6 == len(set(drafted.items))
        for team, ranking in (("A", a), ("B", b)):
            picked = [item for item, t in zip(drafted.items, drafted.teams) if t == team]
            assert picked == [item for item in ranking if item in picked]  # in the arm's own order
            assert abs(drafted.teams.count("A") - drafted.teams.count("B")) <= 1  # turns alternate per round
        # every item is the best of its team's list not shown before it
        for position, (item, team) in enumerate(zip(drafted.items, drafted.teams)):
            ranking = a if team == "A" else b
            assert item == next(i for i in ranking if i not in drafted.items[:position])
    assert team_draft({"A": a, "B": b}, 6, "r1") == team_draft({"A": a, "B": b}, 6, "r1")  # fixed by the request


def test_team_draft_coin_is_fair_and_a_short_list_lets_the_other_arm_fill() -> None:
    first = [team_draft({"A": ["x", "y"], "B": ["z", "w"]}, 2, f"r{i}").teams[0] for i in range(4_000)]
    assert first.count("A") / len(first) == pytest.approx(0.5, abs=0.03)
    drafted = team_draft({"A": ["x"], "B": ["y", "z", "w"]}, 4, "seed")
    assert sorted(drafted.items) == ["w", "x", "y", "z"] and drafted.teams.count("B") == 3
