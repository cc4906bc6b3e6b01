"""``feature_store.json``: ingest, point-in-time training sets and online lookups beside raw DuckDB."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import count, fixed, mark, table, times, verdict
from benchmarks.tables.section import Headline, Section


def _sizes(data: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return sorted(data["sizes"].items(), key=lambda item: int(item[0]))


def _label(events: str) -> str:
    n = int(events)
    return f"{n // 1_000_000}M events" if n % 1_000_000 == 0 else f"{n:,} events"


def _lookup(online: Mapping[str, Any], key: str) -> str:
    lookup = online[key]
    return f"{lookup['p50_us']:,.1f} / {lookup['p99_us']:,.1f} µs"


def _main_table(data: Mapping[str, Any]) -> str:
    sizes = _sizes(data)
    targets = data["targets"]
    rows: list[list[str]] = []
    ingest, training, user, item, vector = [], [], [], [], []
    for _, size in sizes:
        met = size["targets_met"]
        i, t, o = size["ingest"], size["training"], size["online"]
        ingest.append(f"{times(i['ratio'])} ({fixed(i['ours_events_s'])} s vs {fixed(i['raw_events_s'])} s) "
                      f"{mark(met['ingest_within_2x'])}")
        training.append(f"{times(t['ratio'])} ({fixed(t['ours_s'])} s vs {fixed(t['raw_s'])} s) "
                        f"{mark(met['training_within_1_5x'])}")
        user.append(f"{_lookup(o, 'ours_user')} (DuckDB point query: {o['duckdb_user']['p50_us'] / 1000:,.1f} / "
                    f"{o['duckdb_user']['p99_us'] / 1000:,.1f} ms) {mark(met['lookup_user_p99_under_0_2ms'])}")
        item.append(f"{_lookup(o, 'ours_item')} (DuckDB: {o['duckdb_item']['p50_us'] / 1000:,.1f} / "
                    f"{o['duckdb_item']['p99_us'] / 1000:,.1f} ms) {mark(met['lookup_item_p99_under_0_2ms'])}")
        vector.append(_lookup(o, "ours_item_vector"))
    rows.append(["ingest vs raw DuckDB Arrow insert of the same events", *ingest, f"≤ {targets['ingest_ratio']:g}×"])
    rows.append(["point-in-time training set vs hand-written ASOF query (same rows checked)", *training,
                 f"≤ {targets['training_ratio']:g}×"])
    rows.append(["`OnlineStore.user(id)` p50 / p99", *user, f"p99 < {targets['lookup_p99_us']:g} µs"])
    rows.append(["`OnlineStore.item(id)` p50 / p99", *item, f"p99 < {targets['lookup_p99_us']:g} µs"])
    rows.append(["`OnlineStore.item_vector(id)` p50 / p99", *vector, "—"])
    return table(["", *(_label(k) for k, _ in sizes), "target"], rows)


def _detail_table(data: Mapping[str, Any]) -> str:
    sizes = _sizes(data)
    steps = list(sizes[0][1]["ingest"]["ours_steps_s"])
    rows = [["users / items / distinct users with events",
             *(f"{count(s['users'])} / {count(s['items'])} / {count(s['distinct_users'])}" for _, s in sizes)]]
    rows.append(["ingest rows/s, ours vs raw",
                 *(f"{count(s['ingest']['ours_events_rows_per_s'])} vs {count(s['ingest']['raw_events_rows_per_s'])}"
                   for _, s in sizes)])
    rows += [[f"ingest step: {step}", *(f"{s['ingest']['ours_steps_s'].get(step, 0):.2f} s" for _, s in sizes)]
             for step in steps]
    rows.append(["training-set Parquet", *(f"{s['training']['parquet_mb']:,.0f} MB" for _, s in sizes)])
    rows.append(["publish snapshot / load it",
                 *(f"{s['online']['publish_s']:.1f} s / {s['online']['online_load_s']:.2f} s" for _, s in sizes)])
    rows.append(["peak RSS", *(f"{s['peak_rss_mb']:,.0f} MB" for _, s in sizes)])
    return table(["", *(_label(k) for k, _ in sizes)], rows)


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    events, size = _sizes(data)[0]
    i = size["ingest"]
    return (Headline("feature store", f"event ingest at {_label(events)}", f"{fixed(i['ours_events_s'])} s",
                     f"raw DuckDB Arrow insert {fixed(i['raw_events_s'])} s ({times(i['ratio'])})",
                     f"≤ {data['targets']['ingest_ratio']:g}×: {verdict(size['targets_met']['ingest_within_2x'])}"),)


def render(data: Mapping[str, Any]) -> Section:
    s = data["settings"]
    body = "\n\n".join([
        f"Synthetic events, history H = {s['training_history']} in the training set, {s['snapshot_history']} in the "
        f"snapshot; each timing the best of {s['repeats']}; {s['lookups']:,} snapshot lookups and at most "
        f"{s['point_queries']:,} DuckDB point queries per pass; {data['total_s'] / 60:.0f} min in all.",
        _main_table(data), "**Details**", _detail_table(data),
    ])
    return Section(
        title="Feature store",
        measures="`FeatureStore.ingest`, the point-in-time training set and the published snapshot's lookups "
                 "(`OnlineStore`), each beside the bare DuckDB operation doing the same work on the same data "
                 "in the same run, at two sizes.",
        command="python benchmarks/feature_store.py",
        body=body,
        headline=_headline(data),
    )
