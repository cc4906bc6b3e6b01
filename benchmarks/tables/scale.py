"""``scale.json``: every stage a user runs at 1M users, 1M items and 10M events, with wall time and peak RSS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.tables.markdown import count, fixed, load_average, table, times, verdict
from benchmarks.tables.section import Headline, Section, readable_date


def _status(stage: Mapping[str, Any]) -> str:
    if stage.get("ok"):
        return "ok"
    return f"{'skipped' if stage.get('skipped') else 'failed'}: {str(stage.get('error', ''))[:160]}"


def _load(stage: Mapping[str, Any]) -> str:
    """The 1-minute load average as the stage started and ended (the machine is shared)."""
    if "load_average_before" not in stage:
        return "—"
    return f"{load_average(stage['load_average_before'])} → {load_average(stage.get('load_average_after'))}"


def _stages(data: Mapping[str, Any]) -> str:
    rows = [[f"`{s['stage']}`", fixed(s.get("wall_s"), 1), fixed(s.get("peak_rss_gib")),
             count(s.get("events_per_s")), _load(s), readable_date(s["run"]) if s.get("run") else "—", _status(s)]
            for s in data["stages"]]
    return table(["stage", "wall s", "peak RSS GiB", "events/s", "load average", "run started", "status"], rows,
                 "lrrrrll")


def _training(data: Mapping[str, Any]) -> str:
    rows = []
    for kind, t in data["training"].items():
        rows.append([kind, t["mode"], count(t["train_events"]), fixed(t["epoch_s"], 1),
                     fixed(t["s_per_million_events"]), count(t["samples_per_s"]), fixed(t["validation_and_test_s"], 1),
                     f"{t['valid_ndcg@10']:.4f}", f"{t['test_ndcg@10']:.4f}", f"{t['popularity_test_ndcg@10']:.4f}"])
    return table(["pipeline", "mode", "training events", "epoch s", "s per 1M events", "samples/s",
                  "rest of the run s", "valid NDCG@10", "test NDCG@10", "popularity test NDCG@10"], rows,
                 "llrrrrrrrr")


def _serving(data: Mapping[str, Any]) -> str:
    rows = []
    inproc, http = data["serving"].get("in_process"), data["serving"].get("http")
    if inproc:
        index = inproc.get("retrieval", {})
        rows.append(["in-process (`RecommendService`)", f"load {fixed(inproc['load_s'], 1)} s "
                     f"({index.get('kind', '?')} index, {count(index.get('cached_users'))} user vectors)",
                     count(inproc["requests"]), fixed(inproc["p50_ms"]), fixed(inproc["p99_ms"]),
                     str(inproc["errors"])])
    if http:
        statuses = ", ".join(f"{k}: {v}" for k, v in http["statuses"].items())
        rows.append(["HTTP (`recengine serve`)", f"healthy after {fixed(http['ready_s'], 1)} s",
                     count(http["requests"]), fixed(http["p50_ms"]), fixed(http["p99_ms"]), statuses])
    return table(["path", "start", "requests", "p50 ms", "p99 ms", "errors / statuses"], rows, "llrrrl")


def _targets(data: Mapping[str, Any]) -> str:
    t = data["targets"]
    rows = [
        ["peak RSS of any stage", f"{fixed(t['peak_rss_gib'])} GiB", f"≤ {t['memory_gib_max']:g} GiB, every stage "
         f"completing {verdict(t['memory_met'])}"],
        ["sequential ÷ dense epoch seconds per event", times(t["sequential_per_event_ratio"]),
         f"≤ {t['sequential_per_event_ratio_max']:g}× {verdict(t['ratio_met'])}"],
        *([["the same, batches grouped by window length (`length_buckets`)", times(t["bucketed_per_event_ratio"]),
            f"≤ {t['sequential_per_event_ratio_max']:g}× {verdict(t['bucketed_ratio_met'])}"]]
          if t.get("bucketed_per_event_ratio") is not None else []),
        ["in-process recommend p99", f"{fixed(t['in_process_p99_ms'])} ms",
         f"≤ {t['in_process_p99_ms_max']:g} ms {verdict(t['p99_met'])}"],
    ]
    return table(["target", "measured", "verdict"], rows, "lrl")


def _wall(data: Mapping[str, Any]) -> float:
    return float(sum(s.get("wall_s", 0.0) for s in data["stages"]))


def _runs(data: Mapping[str, Any]) -> str:
    """Which invocations measured the stages (``--merge`` re-runs keep the others' records)."""
    reused = data.get("reused_stages") or {}
    if not reused:
        return (f"one run, load average {load_average(data['load_average_before'])} before and "
                f"{load_average(data['load_average_after'])} after.")
    return (f"the stages come from {len({*reused.values(), data.get('run_started')})} runs of the script (a `--merge` "
            f"re-run keeps the other stages' records; the table says which run each came from), the last one with a "
            f"load average of {load_average(data['load_average_before'])} before and "
            f"{load_average(data['load_average_after'])} after.")


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    """One README row: the sequential epoch against the dense one, the peak memory and the p99."""
    t, training = data["targets"], data["training"]
    dense, sequential = training.get("dense"), training.get("sequential")
    inproc = data["serving"].get("in_process")
    if not (dense and sequential and inproc):
        return ()
    bucketed = training.get("sequential-buckets")
    with_buckets = (f", {fixed(bucketed['s_per_million_events'], 1)} s ({times(t['bucketed_per_event_ratio'])}) "
                    f"with length buckets" if bucketed else "")
    ratio_verdict = verdict(t["ratio_met"]) + (f", with length buckets {verdict(t['bucketed_ratio_met'])}"
                                               if bucketed else "")
    return (Headline("scale (1M users, 1M items, 10M events)",
                     "sequential epoch s per 1M events; peak RSS of any stage; recommend p99 in process",
                     f"{fixed(sequential['s_per_million_events'], 1)} s ({times(t['sequential_per_event_ratio'])})"
                     f"{with_buckets}; {fixed(t['peak_rss_gib'])} GiB; {fixed(inproc['p99_ms'])} ms",
                     f"dense+dot epoch {fixed(dense['s_per_million_events'], 1)} s",
                     f"≤ {t['sequential_per_event_ratio_max']:g}×: {ratio_verdict}; "
                     f"≤ {t['memory_gib_max']:g} GiB: {verdict(t['memory_met'])}; "
                     f"≤ {t['in_process_p99_ms_max']:g} ms: {verdict(t['p99_met'])}"),)


def _buckets(data: Mapping[str, Any]) -> str:
    if "sequential-buckets" not in data["training"]:
        return ""
    return (f" (the bucketed sequential run sorts pools of {data['config']['length_buckets']} random batches by "
            f"window length, so each batch is cut to its longest window)")


def render(data: Mapping[str, Any]) -> Section:
    c = data["config"]
    body = "\n\n".join([
        f"Generated {c['domain']} data: {c['users']:,} users, {c['items']:,} items, {c['events']:,} events; one epoch "
        f"per pipeline, dim {c['dim']}, {c['negatives']} shared sampled negatives, {c['torch_threads']} torch "
        f"thread(s), max_history {c['max_history']}"
        f"{_buckets(data)}; validation and test on seeded samples of "
        f"{c['train_eval_users']:,} users, `evaluate` on {c['eval_users']:,}; "
        f"{c['requests']:,} recommends per serving path. The stages took {_wall(data):,.0f} s of wall time in all; "
        f"{_runs(data)} Commit {data['git_commit']}.",
        _targets(data), "**Every stage** (each a CLI process; peak RSS is its own, the HTTP stage's is the whole "
        "process tree's)", _stages(data), "**Training**", _training(data), "**Serving**", _serving(data),
    ])
    return Section(
        title="Scale: 1M users, 1M items, 10M events on one machine",
        measures="Every stage a user runs, as CLI processes on one machine: generate, ingest, publish, train a dense "
                 "and a sequential pipeline for one epoch, evaluate on a user sample, load a Serve replica and answer "
                 "recommends in-process and over HTTP, each with its wall time and peak RSS.",
        command="python benchmarks/scale.py",
        body=body,
        headline=_headline(data),
    )
