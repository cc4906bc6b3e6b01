"""Attribution of clicks to impressions, and the per-arm figures, on hand-made logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recengine.feature_store import FeatureStore
from recengine.feature_store.errors import IngestError
from recengine.feature_store.schema import ColumnType, StoreSchema
from recengine.online import control
from recengine.online.attribution import outcomes
from recengine.online.experiments import new_experiment
from recengine.online.report import EventKinds, experiment_report
from recengine.online.schemas import ExperimentSpec
from recengine.online.store_reports import experiment_status

T0 = datetime(2026, 5, 1, 12, 0)
SCHEMA = StoreSchema(name="shop", open=False, item_columns={"category": ColumnType.string},
                     event_types=["view", "purchase"], default_event_type="view")


def _store(path: Path) -> FeatureStore:
    store = FeatureStore(path, schema=SCHEMA)
    store.ingest(pl.DataFrame({"user_id": ["u1", "u2", "u3"]}), "users")
    store.ingest(pl.DataFrame({"item_id": [f"i{n}" for n in range(1, 7)], "category": ["a"] * 6}), "items")
    return store


def _shown(request: str, user: str, items: list[str], at: datetime, arm: str, model: str,
           experiment: str | None = None) -> list[dict[str, object]]:
    return [{"request_id": request, "ts": at, "user_id": user, "item_id": item, "position": p, "model": model,
             "experiment": experiment, "arm": arm} for p, item in enumerate(items)]


def _events(rows: list[tuple[str, str, str, datetime, str | None]]) -> pl.DataFrame:
    return pl.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                         "event_type": [r[2] for r in rows], "ts": [r[3] for r in rows],
                         "request_id": [r[4] for r in rows]})


def test_each_kind_of_event_is_attributed_or_not_as_the_rules_say(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.duckdb")
    store.log_impressions(
        _shown("r1", "u1", ["i1", "i2", "i3"], T0, "A", "m/1")
        + _shown("r2", "u1", ["i3", "i4", "i5"], T0 + timedelta(minutes=10), "A", "m/1")
        + _shown("r3", "u2", ["i1", "i6"], T0, "B", "m/2"))
    store.ingest(_events([
        ("u1", "i2", "view", T0 + timedelta(minutes=1), "r1"),       # named: r1, position 1
        ("u1", "i3", "view", T0 + timedelta(minutes=11), None),      # latest impression of i3 for u1: r2, pos 0
        ("u1", "i5", "purchase", T0 + timedelta(hours=30), None),    # r2 but 30 h later: outside the 24 h window
        ("u2", "i6", "view", T0 - timedelta(minutes=1), None),       # before it was shown: not attributed
        ("u2", "i1", "view", T0 + timedelta(minutes=2), "nope"),     # names no request that showed it: latest, r3
        ("u3", "i1", "view", T0 + timedelta(minutes=2), None),       # u3 was never shown i1
        ("u1", "i4", "purchase", T0 + timedelta(minutes=12), "r2"),  # a conversion of r2, position 1
    ]), "events")
    found = outcomes(store.cursor(), ["view"], ["purchase"], T0 - timedelta(hours=1), k=10)
    rows = {r["request_id"]: r for r in found.requests.iter_rows(named=True)}
    assert set(rows) == {"r1", "r2", "r3"}
    assert (rows["r1"]["clicks"], rows["r1"]["clicked"], rows["r1"]["rr"]) == (1, 1, pytest.approx(1 / 2))
    assert (rows["r2"]["clicks"], rows["r2"]["conversions"], rows["r2"]["rr"]) == (1, 1, pytest.approx(1.0))
    assert (rows["r3"]["clicks"], rows["r3"]["rr"]) == (1, pytest.approx(1.0))
    # CTR@1: only clicks at the top position count
    top = outcomes(store.cursor(), ["view"], ["purchase"], T0 - timedelta(hours=1), k=1)
    assert {r["request_id"]: r["clicked"] for r in top.requests.iter_rows(named=True)} == {"r1": 0, "r2": 1, "r3": 1}
    # a 48 h window takes the late purchase as well
    wide = outcomes(store.cursor(), ["view"], ["purchase"], T0 - timedelta(hours=1), window=timedelta(hours=48))
    assert {r["request_id"]: r["conversions"] for r in wide.requests.iter_rows(named=True)}["r2"] == 2


def test_experiment_report_counts_what_was_logged(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.duckdb")
    spec = new_experiment("shop", [("control", "m/1"), ("candidate", "m/2")], now=datetime.now(UTC))
    control.record_experiment(store, spec.model_dump())
    now = datetime.now(UTC).replace(tzinfo=None)
    rows, events = [], []
    for n in range(40):  # control: 40 requests from 10 users, 8 clicked; candidate: 40 from 10 users, 20 clicked
        for arm, clicked in (("control", n % 5 == 0), ("candidate", n % 2 == 0)):
            user = f"{arm}-{n % 10}"
            request = f"{arm}-{n}"
            rows += _shown(request, user, ["i1", "i2", "i3"], now, arm, f"m/{1 if arm == 'control' else 2}", spec.id)
            if clicked:
                events.append((user, "i2", "view", now + timedelta(seconds=5), request))
    store.ingest(pl.DataFrame({"user_id": sorted({e[0] for e in events} | {r["user_id"] for r in rows})}), "users")
    store.log_impressions(rows)
    store.ingest(_events(events), "events")
    report = experiment_status(store, "shop")
    arms = {arm.name: arm for arm in report.arms}
    assert (arms["control"].requests, arms["control"].clicks, arms["control"].users) == (40, 8, 10)
    assert (arms["candidate"].requests, arms["candidate"].clicks) == (40, 20)
    assert arms["control"].ctr == pytest.approx(0.2) and arms["candidate"].ctr == pytest.approx(0.5)
    assert arms["candidate"].mrr == pytest.approx(0.5 * 0.5)  # clicked at position 1 (rank 2) half the time
    assert arms["control"].coverage == pytest.approx(3 / 6)
    assert report.ab is not None and report.ab.difference == pytest.approx(0.3)
    # every click of an arm comes from the same few users (2 of control's, 5 of candidate's, all
    # their requests): with the user as the unit that is far from significant
    assert not report.ab.significant and report.ab.planned_requests_per_arm and not report.ab.reached
    assert "no significant difference" in report.verdict
    stopped = control.stop_experiment(store, "shop", "candidate")
    assert stopped["winner"] == "candidate" and stopped["stopped_at"]
    with pytest.raises(Exception, match="no experiment is running"):
        control.stop_experiment(store, "shop")


def test_only_one_experiment_runs_per_domain_and_a_winner_must_be_an_arm(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.duckdb")
    first = new_experiment("shop", [("a", "m/1"), ("b", "m/2")])
    control.record_experiment(store, first.model_dump())
    with pytest.raises(Exception, match="still running"):
        control.record_experiment(store, new_experiment("shop", [("a", "m/1"), ("b", "m/2")]).model_dump())
    with pytest.raises(Exception, match="has arms"):
        control.stop_experiment(store, "shop", "c")
    assert store.experiment("shop")["stopped_at"] is None  # type: ignore[index]  # the refusal changed nothing


def test_impressions_without_a_required_value_are_refused_whole(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.duckdb")
    rows = _shown("r1", "u1", ["i1", "i2"], T0, "A", "m/1")
    rows[1]["model"] = None
    with pytest.raises(IngestError, match="model"):
        store.log_impressions(rows)
    assert store.sql("SELECT count(*) AS n FROM impressions")["n"][0] == 0


def test_a_lift_spread_over_many_users_is_significant(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    store = _store(tmp_path / "s.duckdb")
    spec = new_experiment("shop", [("control", "m/1"), ("candidate", "m/2")], now=datetime.now(UTC))
    control.record_experiment(store, spec.model_dump())
    now = datetime.now(UTC).replace(tzinfo=None)
    rows, events, clicked = [], [], {"control": 0, "candidate": 0}
    for arm, rate in (("control", 0.2), ("candidate", 0.5)):
        for user in range(40):
            for n in range(5):
                request = f"{arm}-{user}-{n}"
                rows += _shown(request, f"{arm}-{user}", ["i1", "i2"], now, arm, "m", spec.id)
                if rng.random() < rate:
                    events.append((f"{arm}-{user}", "i1", "view", now + timedelta(seconds=1), request))
                    clicked[arm] += 1
    store.ingest(pl.DataFrame({"user_id": sorted({r["user_id"] for r in rows})}), "users")
    store.log_impressions(rows)
    store.ingest(_events(events), "events")
    report = experiment_status(store, "shop")
    assert {a.name: a.clicks for a in report.arms} == clicked
    assert report.ab is not None and report.ab.significant and report.ab.p_value < 1e-4  # type: ignore[operator]
    assert report.ab.low is not None and report.ab.low > 0 and "candidate leads" in report.verdict


def test_interleaving_credits_the_arm_that_contributed_the_clicked_and_bought_item(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.duckdb")
    spec = new_experiment("shop", [("control", "m/1"), ("candidate", "m/2")], mode="interleave",
                          now=datetime.now(UTC))
    control.record_experiment(store, spec.model_dump())
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for n, user in enumerate(("u1", "u2", "u3")):
        for position, (item, arm) in enumerate((("i1", "control"), ("i2", "candidate"), ("i3", "control"))):
            rows.append({"request_id": f"r{n}", "ts": now, "user_id": user, "item_id": item, "position": position,
                         "model": "m/1" if arm == "control" else "m/2", "experiment": spec.id, "arm": arm})
    store.log_impressions(rows)
    later = now + timedelta(seconds=5)
    store.ingest(_events([("u1", "i2", "view", later, "r0"), ("u1", "i2", "purchase", later, "r0"),
                          ("u2", "i2", "view", later, None), ("u3", "i1", "view", later, "r2")]), "events")
    # views are clicks, purchases conversions (as a domain preset declares them)
    report = experiment_report(store.cursor(), ExperimentSpec.model_validate(store.experiment("shop")),
                               EventKinds(["view"], ["purchase"]), catalogue=6)
    arms = {arm.name: arm for arm in report.arms}
    assert (arms["candidate"].clicks, arms["candidate"].conversions) == (2, 1)
    assert (arms["control"].clicks, arms["control"].conversions) == (1, 0)
    assert arms["candidate"].conversion_rate == pytest.approx(1 / 3) and arms["control"].conversion_rate == 0
    assert report.interleaving is not None
    assert report.interleaving.wins == {"control": 1, "candidate": 2} and report.interleaving.ties == 0
    assert report.interleaving.user_preference == {"control": 1, "candidate": 2}
