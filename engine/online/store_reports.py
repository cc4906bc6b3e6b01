"""Online figures of a domain's store: what ``experiment status``, ``GET /<domain>/experiment``
and ``GET /<domain>/online`` answer, computed on a cursor of their own (so a report never
holds up the writer's commits)."""

from __future__ import annotations

from datetime import timedelta

from recengine.errors import NotFoundError
from recengine.feature_store import FeatureStore
from recengine.online.attribution import DEFAULT_WINDOW
from recengine.online.report import EventKinds, experiment_report, online_summary
from recengine.online.schemas import ExperimentReport, ExperimentSpec, OnlineSummary
from recengine.plugin_manager import get_plugin_manager


def event_kinds(domain: str, store: FeatureStore) -> EventKinds:
    """The domain's click and conversion event types (a domain without a preset: its store's default type)."""
    from recengine.errors import EngineError

    try:
        clicks, conversions = get_plugin_manager().domain(domain).online_kinds()
    except EngineError:
        default = store.schema.default_event_type
        clicks, conversions = [default], [default]
    return EventKinds(clicks, conversions)


def experiment_status(store: FeatureStore, domain: str, experiment_id: str | None = None, k: int = 10,
                      window_hours: float | None = None) -> ExperimentReport:
    """The report of ``experiment_id`` (default: the running one, else the latest); an event is
    attributed to an impression at most ``window_hours`` earlier (default 24)."""
    window = timedelta(hours=window_hours) if window_hours else DEFAULT_WINDOW
    spec = store.experiment(domain, experiment_id)
    if spec is None:
        what = f"experiment {experiment_id!r}" if experiment_id else "an experiment"
        raise NotFoundError(f"{domain} never ran {what}; start one with `recengine experiment start --domain {domain}`")
    cursor = store.cursor()
    try:
        return experiment_report(cursor, ExperimentSpec.model_validate(spec), event_kinds(domain, store),
                                 _catalogue(cursor), k, window)
    finally:
        cursor.close()


def online_figures(store: FeatureStore, domain: str, hours: float = 24.0, k: int = 10,
                   window_hours: float | None = None) -> OnlineSummary:
    experiment = None
    if store.experiment(domain) is not None:
        experiment = experiment_status(store, domain, k=k, window_hours=window_hours)
    cursor = store.cursor()
    try:
        window = timedelta(hours=window_hours) if window_hours else DEFAULT_WINDOW
        return online_summary(cursor, domain, event_kinds(domain, store), _catalogue(cursor), experiment, hours, k,
                              window=window)
    finally:
        cursor.close()


def _catalogue(cursor: object) -> int:
    row = cursor.execute("SELECT count(DISTINCT item_id) FROM items").fetchone()  # type: ignore[attr-defined]
    return int(row[0]) if row else 0
