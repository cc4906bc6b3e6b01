"""Online figures from the logged data alone: per-arm (or per-model) metrics, the A/B test,
the interleaving credit, a timeline, and events written per minute.

The caller gives a DuckDB connection to the store (the writer's own cursor while serving,
or the file opened read-only), so ``recengine experiment status``, ``GET /<domain>/experiment``
and the benchmark all compute the same numbers from the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from recengine.online import stats
from recengine.online.attribution import DEFAULT_WINDOW, Outcomes, outcomes
from recengine.online.schemas import (
    ABTest,
    ArmMetrics,
    ExperimentReport,
    ExperimentSpec,
    InterleavingTest,
    MinuteCount,
    OnlineSummary,
    TimelinePoint,
)

TIMELINE_POINTS = 60  # buckets per arm in a report's timeline (at most)
MIN_BUCKET_S = 10  # ... each at least this long


class EventKinds:
    """Which event types count as clicks and which as conversions, for a domain."""

    def __init__(self, clicks: Sequence[str], conversions: Sequence[str]) -> None:
        self.clicks = list(clicks)
        self.conversions = list(conversions) or list(clicks)


def experiment_report(con: duckdb.DuckDBPyConnection, spec: ExperimentSpec, kinds: EventKinds, catalogue: int,
                      k: int = 10, window: timedelta = DEFAULT_WINDOW) -> ExperimentReport:
    started = _naive(spec.started_at)
    stopped = _naive(spec.stopped_at) if spec.stopped_at else None
    found = outcomes(con, kinds.clicks, kinds.conversions, started, stopped, spec.id, k, window)
    names = [arm.name for arm in spec.arms]
    models = {arm.name: arm.bundle for arm in spec.arms}
    if spec.mode == "interleave":
        arms = [_interleaved_arm(found, name, models[name], catalogue) for name in names]
        drafted = interleaving(found, names)
        return ExperimentReport(experiment=spec, status="stopped" if stopped else "running", arms=arms,
                                interleaving=drafted, timeline=_interleaved_timeline(found, names),
                                verdict=_interleaving_verdict(drafted))
    arms = [_arm(found.requests.filter(pl.col("arm") == name), name, models[name], found, catalogue) for name in names]
    control = found.requests.filter(pl.col("arm") == names[0])
    candidate = found.requests.filter(pl.col("arm") == names[1])
    test = ab_test(control, candidate, names[0], names[1], spec.min_effect)
    spec = spec.model_copy(update={"planned_requests_per_arm": test.planned_requests_per_arm})
    return ExperimentReport(experiment=spec, status="stopped" if stopped else "running", arms=arms, ab=test,
                            timeline=_timeline(found.requests, names), verdict=_ab_verdict(test))


def ab_test(control: pl.DataFrame, candidate: pl.DataFrame, control_name: str, candidate_name: str,
            min_effect: float) -> ABTest:
    """Two-sided test of CTR@k, users as the unit (delta method)."""
    a, b = _ctr(control), _ctr(candidate)
    diff = stats.difference(a, b)
    planned = stats.planned_trials(a.value, min_effect)
    reached = planned is not None and a.trials >= planned and b.trials >= planned
    lift = None if diff.difference is None or not a.value else diff.difference / a.value
    return ABTest(control=control_name, candidate=candidate_name, difference=_round(diff.difference),
                  relative_lift=_round(lift), low=_round(diff.low), high=_round(diff.high), z=_round(diff.z),
                  p_value=diff.p_value, significant=diff.p_value is not None and diff.p_value < stats.ALPHA,
                  planned_requests_per_arm=planned, reached=reached)


def interleaving(found: Outcomes, names: list[str]) -> InterleavingTest:
    """Per request, the arm whose items got more clicks wins; users vote with their wins."""
    first, second = names
    clicked = found.credits.filter(pl.col("clicks") > 0)
    credit = clicked.pivot(on="arm", index="request_id", values="clicks") if clicked.height else None
    wins = {first: 0, second: 0}
    ties = 0
    preference = {first: 0, second: 0}
    if credit is not None:
        for name in names:
            if name not in credit.columns:
                credit = credit.with_columns(pl.lit(0).alias(name))
        credit = credit.fill_null(0).join(found.requests.select("request_id", "user_id"), on="request_id")
        margin = credit[second] - credit[first]
        wins = {first: int((margin < 0).sum()), second: int((margin > 0).sum())}
        ties = int((margin == 0).sum())
        per_user = credit.with_columns(margin=margin).group_by("user_id").agg(
            pl.col("margin").sign().sum().alias("votes"))
        preference = {first: int((per_user["votes"] < 0).sum()), second: int((per_user["votes"] > 0).sum())}
    decided = wins[first] + wins[second] + ties
    p = stats.sign_test(preference[first], preference[second])
    return InterleavingTest(arms=names, wins=wins, ties=ties,
                            credit=_round((wins[second] - wins[first]) / decided) if decided else None,
                            user_preference=preference, p_value=p, significant=p is not None and p < stats.ALPHA)


def online_summary(con: duckdb.DuckDBPyConnection, domain: str, kinds: EventKinds, catalogue: int,
                   experiment: ExperimentReport | None, hours: float = 24.0, k: int = 10,
                   now: datetime | None = None, window: timedelta = DEFAULT_WINDOW) -> OnlineSummary:
    """The last ``hours`` of traffic per serving model, and events written per minute over the last hour."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    found = outcomes(con, kinds.clicks, kinds.conversions, now - timedelta(hours=hours), None, None, k, window)
    models = [_arm(found.requests.filter(pl.col("model") == model), model, model, found, catalogue, by="model")
              for model in found.requests["model"].unique(maintain_order=True).to_list()]
    minutes = con.execute("""
        SELECT time_bucket(INTERVAL 1 minute, committed_at) AS minute, sum(records) AS events
        FROM live_log WHERE kind = 'events' AND committed_at >= ? GROUP BY 1 ORDER BY 1""",
                          [now - timedelta(hours=1)]).fetchall()
    return OnlineSummary(domain=domain, window_hours=hours, models=models, experiment=experiment,
                         events_per_minute=[MinuteCount(minute=_iso(m), events=int(n)) for m, n in minutes])


# -- pieces ---------------------------------------------------------------------------------

def _ctr(requests: pl.DataFrame, column: str = "clicked") -> stats.Ratio:
    per_user = requests.group_by("user_id").agg(pl.col(column).sum().alias("s"), pl.len().alias("n"))
    return stats.ratio(per_user["s"].to_numpy(), per_user["n"].to_numpy())


def _arm(requests: pl.DataFrame, name: str, model: str, found: Outcomes, catalogue: int,
         by: str = "arm") -> ArmMetrics:
    ctr = _ctr(requests)
    low, high = ctr.interval()
    shown = found.shown_items.filter(pl.col("name" if by == "arm" else "model") == name)
    items = int(shown["items"].sum()) if shown.height else 0
    count = requests.height
    return ArmMetrics(
        name=name, model=model, users=requests["user_id"].n_unique() if count else 0, requests=count,
        impressions=int(requests["shown"].sum()) if count else 0, clicks=int(requests["clicks"].sum()) if count else 0,
        conversions=int(requests["conversions"].sum()) if count else 0, ctr=_round(ctr.value),
        ctr_low=_round(low), ctr_high=_round(high),
        conversion_rate=_round(float(requests["converted"].mean())) if count else None,  # type: ignore[arg-type]
        mrr=_round(float(requests["rr"].mean())) if count else None,  # type: ignore[arg-type]
        coverage=_round(items / catalogue) if catalogue else None)


def _interleaved_arm(found: Outcomes, name: str, model: str, catalogue: int) -> ArmMetrics:
    """An interleaving arm: requests it took part in (all), clicks and conversions on the items it contributed."""
    requests = found.requests
    credited = found.credits.filter(pl.col("arm") == name)
    flags = credited.select("request_id", (pl.col("clicks") > 0).cast(pl.Int64).alias("won_click"),
                            (pl.col("conversions") > 0).cast(pl.Int64).alias("won_conversion"))
    clicked = requests.join(flags, on="request_id", how="left").with_columns(
        pl.col("won_click").fill_null(0), pl.col("won_conversion").fill_null(0))
    ctr = _ctr(clicked, "won_click")
    low, high = ctr.interval()
    shown = found.shown_items.filter(pl.col("name") == name)
    return ArmMetrics(name=name, model=model, users=requests["user_id"].n_unique(), requests=requests.height,
                      impressions=int(shown["impressions"].sum()) if shown.height else 0,
                      clicks=int(credited["clicks"].sum()) if credited.height else 0,
                      conversions=int(credited["conversions"].sum()) if credited.height else 0,
                      ctr=_round(ctr.value), ctr_low=_round(low), ctr_high=_round(high),
                      conversion_rate=_round(float(clicked["won_conversion"].mean())) if requests.height else None,  # type: ignore[arg-type]
                      coverage=_round(int(shown["items"].sum()) / catalogue) if catalogue and shown.height else None)


def _buckets(requests: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    if not requests.height:
        return requests, f"{MIN_BUCKET_S}s"
    first, last = requests["ts"].min(), requests["ts"].max()
    span = (last - first).total_seconds() if isinstance(first, datetime) and isinstance(last, datetime) else 0
    seconds = max(MIN_BUCKET_S, int(np.ceil(span / TIMELINE_POINTS)))
    every = f"{seconds}s"
    return requests.with_columns(pl.col("ts").dt.truncate(every).alias("bucket")), every


def _timeline(requests: pl.DataFrame, names: list[str]) -> list[TimelinePoint]:
    bucketed, _ = _buckets(requests)
    if not bucketed.height:
        return []
    rows = bucketed.filter(pl.col("arm").is_in(names)).group_by("bucket", "arm").agg(
        pl.len().alias("requests"), pl.col("clicked").sum().alias("clicks")).sort("bucket", "arm")
    return [TimelinePoint(minute=_iso(r["bucket"]), arm=r["arm"], requests=r["requests"], clicks=r["clicks"],
                          ctr=_round(r["clicks"] / r["requests"])) for r in rows.iter_rows(named=True)]


def _interleaved_timeline(found: Outcomes, names: list[str]) -> list[TimelinePoint]:
    bucketed, _ = _buckets(found.requests)
    if not bucketed.height:
        return []
    points = []
    for name in names:
        credited = found.credits.filter((pl.col("arm") == name) & (pl.col("clicks") > 0)).select(
            "request_id", pl.lit(1).alias("won"))
        rows = bucketed.join(credited, on="request_id", how="left").group_by("bucket").agg(
            pl.len().alias("requests"), pl.col("won").fill_null(0).sum().alias("clicks")).sort("bucket")
        points += [TimelinePoint(minute=_iso(r["bucket"]), arm=name, requests=r["requests"], clicks=r["clicks"],
                                 ctr=_round(r["clicks"] / r["requests"])) for r in rows.iter_rows(named=True)]
    return sorted(points, key=lambda p: (p.minute, p.arm))


def _ab_verdict(test: ABTest) -> str:
    if test.difference is None or test.p_value is None:
        return "not enough data yet: each arm needs clicks from at least two users"
    leader = test.candidate if test.difference > 0 else test.control
    sample = ("the planned sample is reached" if test.reached else
              f"the planned sample ({test.planned_requests_per_arm} requests per arm) is not reached yet"
              if test.planned_requests_per_arm else "no planned sample yet (control has no clicks)")
    if test.significant:
        return f"{leader} leads (CTR difference {test.difference:+.4f}, p = {test.p_value:.3g}, significant); {sample}"
    return f"no significant difference (p = {test.p_value:.3g}); {sample}"


def _interleaving_verdict(test: InterleavingTest) -> str:
    if test.p_value is None:
        return "not enough data yet: no request has clicks"
    first, second = test.arms
    leader = second if test.user_preference[second] > test.user_preference[first] else first
    if test.significant:
        return (f"{leader} is preferred by {test.user_preference[leader]} of "
                f"{sum(test.user_preference.values())} users with a preference (p = {test.p_value:.3g}, significant)")
    return f"no significant preference (p = {test.p_value:.3g})"


def _naive(moment: str) -> datetime:
    value = datetime.fromisoformat(moment)
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _iso(moment: datetime) -> str:
    return moment.replace(tzinfo=UTC).isoformat()


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)
