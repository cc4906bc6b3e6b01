"""Attribution: which logged impression each click or conversion belongs to, in SQL.

An event of a click or conversion type is attributed to the impression of the same item
in the request its ``request_id`` names; an event without one (or naming a request that
did not show its item) to the latest impression of that item for that user at most
``window`` earlier (DuckDB's ASOF join). The result is one row per request with what its
attributed events were, from which every online metric follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import polars as pl

DEFAULT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Outcomes:
    """Per request: ``request_id, user_id, model, arm, ts, shown, clicked@k, converted, rr,
    clicks, conversions``; per (request, arm) the clicks and conversions on that arm's items
    (interleaving's credit); the items shown."""

    requests: pl.DataFrame
    credits: pl.DataFrame
    shown_items: pl.DataFrame  # arm (or model), distinct items shown


def outcomes(con: duckdb.DuckDBPyConnection, clicks: list[str], conversions: list[str], since: datetime,
             until: datetime | None = None, experiment: str | None = None, k: int = 10,
             window: timedelta = DEFAULT_WINDOW) -> Outcomes:
    """Requests logged in [since, until] (of ``experiment`` when given) and their attributed events."""
    kinds = sorted(set(clicks) | set(conversions))
    where = "ts >= ? AND (? IS NULL OR ts <= ?) AND (? IS NULL OR experiment = ?)"
    params = [since, until, until, experiment, experiment]
    con.execute(f"CREATE OR REPLACE TEMP TABLE shown AS SELECT * FROM impressions WHERE {where}", params)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE acted AS
        SELECT seq, user_id, item_id, event_type, ts, request_id FROM events
        WHERE ts >= ? AND event_type IN (SELECT unnest(?::VARCHAR[]))""", [since, kinds])
    con.execute("""
        CREATE OR REPLACE TEMP TABLE attributed AS
        WITH named AS (
            SELECT e.seq, e.event_type, s.request_id, s.position, s.arm
            FROM acted e JOIN shown s ON s.request_id = e.request_id AND s.item_id = e.item_id
        ),
        latest AS (
            SELECT e.seq, e.event_type, s.request_id, s.position, s.arm, e.ts - s.ts AS delay
            FROM (SELECT * FROM acted ANTI JOIN named USING (seq)) e
            ASOF JOIN shown s ON s.user_id = e.user_id AND s.item_id = e.item_id AND e.ts >= s.ts
        )
        SELECT seq, event_type, request_id, position, arm FROM named
        UNION ALL
        SELECT seq, event_type, request_id, position, arm FROM latest WHERE delay <= ?""", [window])
    requests = con.sql("""
        WITH requests AS (
            SELECT request_id, any_value(user_id) AS user_id,
                   string_agg(DISTINCT model, ' + ' ORDER BY model) AS model,
                   CASE WHEN count(DISTINCT arm) = 1 THEN any_value(arm) END AS arm,
                   min(ts) AS ts, count(*) AS shown
            FROM shown GROUP BY request_id
        ),
        acts AS (
            SELECT request_id,
                   max((event_type IN (SELECT unnest(?::VARCHAR[])) AND position < ?)::INT) AS clicked,
                   max((event_type IN (SELECT unnest(?::VARCHAR[])))::INT) AS converted,
                   max(CASE WHEN event_type IN (SELECT unnest(?::VARCHAR[])) THEN 1.0 / (position + 1) END) AS rr,
                   count(*) FILTER (WHERE event_type IN (SELECT unnest(?::VARCHAR[]))) AS clicks,
                   count(*) FILTER (WHERE event_type IN (SELECT unnest(?::VARCHAR[]))) AS conversions
            FROM attributed GROUP BY request_id
        )
        SELECT r.request_id, coalesce(r.user_id, 'request:' || r.request_id) AS user_id, r.model, r.arm, r.ts,
               r.shown, coalesce(a.clicked, 0) AS clicked, coalesce(a.converted, 0) AS converted,
               coalesce(a.rr, 0.0) AS rr, coalesce(a.clicks, 0) AS clicks,
               coalesce(a.conversions, 0) AS conversions
        FROM requests r LEFT JOIN acts a USING (request_id)
        ORDER BY r.ts""", params=[clicks, k, conversions, clicks, clicks, conversions]).pl()
    credits = con.sql("""
        SELECT request_id, arm,
               count(*) FILTER (WHERE event_type IN (SELECT unnest(?::VARCHAR[]))) AS clicks,
               count(*) FILTER (WHERE event_type IN (SELECT unnest(?::VARCHAR[]))) AS conversions
        FROM attributed WHERE arm IS NOT NULL
        GROUP BY request_id, arm""", params=[clicks, conversions]).pl()
    shown_items = con.sql("""
        SELECT coalesce(arm, model) AS name, model, count(DISTINCT item_id) AS items, count(*) AS impressions
        FROM shown GROUP BY ALL""").pl()
    for table in ("shown", "acted", "attributed"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return Outcomes(requests, credits, shown_items)
