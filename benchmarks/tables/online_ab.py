"""``online_ab.json``: A/A, A/B and interleaving experiments on simulated users, from the logs alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from benchmarks.tables.markdown import pvalue, table, verdict
from benchmarks.tables.section import Headline, Section


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _test(report: Mapping[str, Any]) -> str:
    if report.get("ab"):
        ab = report["ab"]
        return (f"{ab['difference']:+.3f} ({ab['low']:+.3f} to {ab['high']:+.3f}), p = {pvalue(ab['p_value'])}: "
                f"{'significant' if ab['significant'] else 'no significant difference'}")
    il = report.get("interleaving")
    if il:
        a, b = il["arms"]
        return (f"{b} won {il['wins'][b]:,} requests, {a} {il['wins'][a]:,} ({il['ties']} ties); "
                f"{il['user_preference'][b]:,} of {il['user_preference'][a] + il['user_preference'][b]:,} users "
                f"prefer {b}, sign test p = {pvalue(il['p_value'])}")
    return "—"


def _runs_table(data: Mapping[str, Any]) -> str:
    rows = []
    for run in data["runs"]:
        report = run["report"]
        interleaved = run["mode"] == "interleave"
        for index, arm in enumerate(report["arms"]):
            ctr = ("—" if interleaved else f"{arm['ctr']:.3f} ({arm['ctr_low']:.3f}–{arm['ctr_high']:.3f})")
            clicks = f"{arm['clicks']:,} credited" if interleaved else f"{arm['clicks']:,}"
            rows.append([run["label"] if index == 0 else "", f"{arm['name']} ({arm['model']})", f"{arm['users']:,}",
                         f"{arm['requests']:,}", clicks, ctr, _percent(arm["conversion_rate"]),
                         "—" if arm["mrr"] is None else f"{arm['mrr']:.3f}", _percent(arm["coverage"]),
                         _test(report) if index == 0 else ""])
    return table(["run", "arm (bundle)", "users", "requests", "clicks", "CTR@10 (95%)", "conversion", "MRR",
                  "coverage", "test"], rows, "llrrrlrrrl")


def _stops(data: Mapping[str, Any]) -> str:
    rows = [[run["label"], run["stop"]["promote"] or "— (stopped without promoting)", run["stop"]["requests_during"],
             run["stop"]["failed_during"], run["traffic"]["errors"], f"{run['traffic']['with_request_id']:,}"]
            for run in data["runs"]]
    return table(["run", "`experiment stop --promote`", "requests in flight", "failed", "simulator errors",
                  "clicks sent with their request_id"], rows, "llrrrr")


def _targets(data: Mapping[str, Any]) -> str:
    t, aa = data["targets"], data["aa_rerandomised"]
    rows = [
        ["A/B: the trained model beats popularity, significantly", verdict(t["ab_trained_wins_met"])],
        ["A/A: no significant difference", verdict(t["aa_not_significant_met"])],
        ["interleaving: users prefer the trained model", verdict(t["interleaving_trained_preferred"])],
        [f"A/A false-positive rate over {aa['reruns']} re-randomisations near 5%: {aa['rejected']} significant at 0.05 "
         f"= {aa['false_positive_rate']:.1%}", verdict(t["aa_false_positive_rate_near_5pct_met"])],
        ["promotion under load: zero failed requests", verdict(t["promote_under_load_zero_failed_met"])],
    ]
    return table(["target", ""], rows)


def _screenshot(data: Mapping[str, Any]) -> list[str]:
    """The dashboard shot at the end of the run, where the run took one (a file beside the JSON)."""
    shot = data.get("dashboard_screenshot")
    if not shot:
        return []
    name = PurePath(str(shot)).name
    return [f"The dashboard at the end of the run (the A/B experiment, stopped with its winner promoted):\n\n"
            f"![The ecommerce dashboard after the A/B run](../benchmarks/results/{name})"]


def _headline(data: Mapping[str, Any]) -> tuple[Headline, ...]:
    ab_run = next((r for r in data["runs"] if r["mode"] == "ab" and r["report"]["ab"]["significant"]), None)
    if ab_run is None:
        return ()
    ab = ab_run["report"]["ab"]
    arms = {a["name"]: a for a in ab_run["report"]["arms"]}
    ours, base = arms[ab["candidate"]], arms[ab["control"]]
    return (Headline("online A/B (simulated users)", f"CTR@10, trained ({ours['model']}) vs popularity "
                                                     f"({base['model']}), p = {pvalue(ab['p_value'])}",
                     f"{ours['ctr']:.3f}", f"popularity {base['ctr']:.3f}",
                     f"A/A false-positive rate {data['aa_rerandomised']['false_positive_rate']:.1%}, near 5%: "
                     f"{verdict(data['targets']['aa_false_positive_rate_near_5pct_met'])}"),)


def render(data: Mapping[str, Any]) -> Section:
    c, sim = data["config"], data["simulator"]
    body = "\n\n".join([
        f"The ecommerce domain ({c['users']:,} users, {c['items']:,} products, {c['events']:,} events) served by "
        "`recengine serve`; experiments started and stopped with the `recengine experiment` CLI; a click "
        "simulator on the HTTP API whose users click by the generator's true category tastes (which no model "
        f"sees) with position bias (examined with probability 1/(p+1)^{sim['examination_decay']:g}), "
        f"{sim['purchase_after_click']:.0%} of clicks followed by a purchase. {c['requests']:,} requests per run on "
        f"{c['concurrency']} connections; every figure is from `experiment status --json`, i.e. from the logged "
        "impressions and events alone.",
        _runs_table(data), "**Stopping each experiment under load**", _stops(data), "**Targets**", _targets(data),
        *_screenshot(data),
    ])
    return Section(
        title="Online experiments",
        measures="The online loop end to end: A/A, A/B and interleaving experiments between the trained model and "
                 "a popularity baseline on simulated users who know what they like, the statistics' false-positive "
                 "rate, and promotion of the winner under load.",
        command="python -m benchmarks.online_ab",
        body=body,
        headline=_headline(data),
    )
