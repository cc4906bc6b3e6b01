"""One domain's recommendation service: loads a bundle + snapshot, answers requests, and
swaps to a newer bundle or snapshot without dropping requests (``configure``).

A batch of requests is answered request by request (:meth:`RecommendService.recommend_many`
returns each one's response or error), so one bad request never fails its neighbours."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from recengine.api_keys import ApiKeys
from recengine.errors import EngineError, NotFoundError
from recengine.feature_store.live_log import LiveAck, LiveBatch, LiveChange
from recengine.live_overlay import LiveOverlay
from recengine.online.impression_log import ImpressionLog
from recengine.online.routing import Answer, Arms
from recengine.online.routing import answer as answer_in_experiment
from recengine.online.schemas import ArmSpec, ExperimentReport, ExperimentSpec, OnlineSummary
from recengine.recommender import Recommender, Request
from recengine.serve.coalesce import Coalescer
from recengine.serve.live import AppliedSignal, Follower, LiveLog, WriterUnavailable
from recengine.serve.metrics import metrics_for
from recengine.serve.schemas import (
    Health,
    ModelInfo,
    OfflineMetrics,
    RecentEvent,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    UserHistoryResponse,
)


class ServeConfig(BaseModel):
    """What a replica serves; passed as Ray Serve ``user_config`` so it can change live."""

    bundle: str = Field(description="Bundle directory (models/<name>/<version>) or name.")
    models: str | None = Field(None, description="Models root when ``bundle`` is a name.")
    snapshot: str | None = Field(None, description="Snapshot root; default: beside the bundle's store.")
    snapshot_version: int | None = Field(
        None, description="Published version at deploy time; a new value makes replicas reload the snapshot.")
    store: str | None = Field(None, description="The domain's store: writes go to its writer, whose log replicas "
                                                "follow (None: a read-only service of the snapshot).")
    keys: str | None = Field(None, description="The API keys file writes are checked against (recengine keys).")
    require_key_for_reads: bool = Field(False, description="Reads need a key of the domain too.")
    create_items: bool = Field(False, description="Events may name items the store lacks (they are created).")
    deployed_at: str | None = Field(None, description="When this config was deployed (ISO 8601): an experiment "
                                                      "stopped later with a winner overrides its bundle.")


class NotReady(EngineError):
    """The service has no model loaded yet (health check fails, requests get 503)."""


class ReadOnlyService(EngineError):
    """Writes to a domain served without its store (405)."""


logger = logging.getLogger("recengine.serve")

VISIBLE_WAIT_S = 1.0  # how long a write waits to be merged on the replica that took it


def _apply(recommender: Recommender, changes: list[LiveChange]) -> None:
    """Merge committed batches: posted items into the catalogue first, then the overlay."""
    assert recommender.live is not None
    fresh = [c for c in changes if c.seq > recommender.live.seq]
    items = [c.frame for c in fresh if c.kind == "items"]
    if items:
        import polars as pl

        recommender.add_items(pl.concat(items, how="diagonal_relaxed"))
    recommender.live.apply(fresh)


class RecommendService:
    """Holds the current :class:`Recommender`; requests read one reference, so a swap is atomic."""

    def __init__(self, domain: str, config: ServeConfig | dict[str, Any] | None = None,
                 log: LiveLog | None = None) -> None:
        self.domain = domain
        self._recommender: Recommender | None = None
        self._config: ServeConfig | None = None
        self._swap = threading.Lock()
        self.log = log  # the writer's log (writes, and what replicas follow); None: read-only
        self.follower: Follower | None = None
        self.applied = AppliedSignal()  # wakes writes waiting for their batch to be merged here
        self._keys: ApiKeys | None = None
        self._arms: Arms | None = None  # the running experiment's recommenders
        self._experiment_key: tuple[str, str | None] | None = None  # (id, stopped_at) last followed
        self._recorded_experiment: dict[str, Any] | None = None  # as the log reported it at catch-up
        self._reports: Coalescer[Any] = Coalescer()  # /experiment and /online under load: shared computations
        self.impressions: ImpressionLog | None = None
        if config is not None:
            self.configure(config)

    @property
    def config(self) -> ServeConfig | None:
        return self._config

    @property
    def api_keys(self) -> ApiKeys | None:
        """The key store writes (and guarded reads) are checked against; None refuses all."""
        path = self._config.keys if self._config is not None else None
        if path is None:
            return None
        if self._keys is None or self._keys.path != Path(path):
            self._keys = ApiKeys(path)
        return self._keys

    @property
    def recommender(self) -> Recommender:
        recommender = self._recommender
        if recommender is None:
            raise NotReady(f"{self.domain}: no model loaded")
        return recommender

    def configure(self, config: ServeConfig | dict[str, Any], force: bool = False) -> None:
        """Load the configured bundle and snapshot beside the current ones, catch up with the
        live log since that snapshot, then swap.

        Requests in flight finish on the model they started with. A config equal to the
        current one is a no-op (unless ``force``: a newer snapshot was published); a bad one
        raises and leaves the current model serving.
        """
        config = config if isinstance(config, ServeConfig) else ServeConfig.model_validate(config)
        with self._swap:
            if config == self._config and self._recommender is not None and not force:
                return
            # every user's vector encoded once per snapshot: requests skip the user encoder
            loaded = Recommender.load(config.bundle, config.models, config.snapshot, precompute_users=True)
            loaded.live = LiveOverlay(loaded.online.data.live_seq if loaded.online is not None else 0)
            if self.log is not None:
                self._catch_up(loaded)
            self._recommender, self._config = loaded, config
        if self.log is not None:
            if self.impressions is None:
                self.impressions = ImpressionLog(self.log.log_impressions)
            self.follow_experiment(self._recorded_experiment)

    def _catch_up(self, recommender: Recommender) -> None:
        """Apply what the log committed after ``recommender``'s snapshot (before it serves)."""
        assert self.log is not None and recommender.live is not None
        while True:
            try:
                found = self.log.changes_since(recommender.live.seq)
            except WriterUnavailable:
                return  # the follower catches up once the writer is back
            self._recorded_experiment = found.experiment
            if not found.changes:
                return
            _apply(recommender, found.changes)

    def live_seq(self) -> int | None:
        """The last live batch the serving model has merged (None: nothing loaded)."""
        recommender = self._recommender
        return None if recommender is None or recommender.live is None else recommender.live.seq

    def snapshot_is_older_than(self, published_version: int) -> bool:
        recommender = self._recommender
        return (recommender is not None and recommender.online is not None
                and 0 < recommender.online.version < published_version)

    def reload_snapshot(self) -> None:
        """Load the newly published snapshot (same bundle) and swap, the overlay rebased on it
        (an experiment's arms too)."""
        if self._config is not None:
            self._experiment_key = None
            self.configure(self._config, force=True)

    def apply_changes(self, changes: list[LiveChange]) -> None:
        recommender = self._recommender
        if recommender is not None:
            _apply(recommender, changes)
        arms = self._arms
        for arm in arms.recommenders.values() if arms is not None else ():
            if arm is not recommender:
                _apply(arm, changes)

    # -- experiments -------------------------------------------------------------------
    @property
    def experiment(self) -> ExperimentSpec | None:
        arms = self._arms
        return arms.spec if arms is not None else None

    def follow_experiment(self, recorded: dict[str, Any] | None) -> None:
        """Serve the store's experiment as recorded: load the arms of a running one (then
        route requests to them), drop them once it stops, and serve a promoted winner unless
        this replica's config was deployed after the stop."""
        key = None if recorded is None else (str(recorded["id"]), recorded.get("stopped_at"))
        if key == self._experiment_key:
            return
        spec = ExperimentSpec.model_validate(recorded) if recorded is not None else None
        if spec is not None and spec.domain == self.domain and spec.stopped_at is None:
            try:
                recommenders = {arm.name: self._arm_recommender(arm) for arm in spec.arms}
            except Exception:  # an arm's bundle is gone or damaged: serve on without the experiment
                logger.exception("experiment %s cannot be served (an arm does not load); serving %s alone",
                                 spec.id, self.recommender.bundle.path)
                self._arms, self._experiment_key = None, key
                return
            self._arms = Arms(spec, recommenders)
        elif spec is not None and spec.domain == self.domain:
            self._promote(spec)
            self._arms = None
        else:
            self._arms = None
        self._experiment_key = key

    def _promote(self, spec: ExperimentSpec) -> None:
        config = self._config
        if spec.winner is None or config is None or spec.stopped_at is None:
            return
        if config.deployed_at is not None and _moment(config.deployed_at) > _moment(spec.stopped_at):
            return  # a deploy after the stop chose what serves
        arm = next(a for a in spec.arms if a.name == spec.winner)
        winner = self._arms.recommenders.get(arm.name) if self._arms is not None else None
        with self._swap:
            self._recommender = winner or self._arm_recommender(arm)

    def _arm_recommender(self, arm: ArmSpec) -> Recommender:
        """The serving model when the arm is its bundle, else the arm's bundle loaded on the
        same snapshot and caught up with the live log."""
        primary, config = self.recommender, self._config
        assert config is not None
        path = Path(arm.path or arm.bundle)
        if path.resolve() == primary.bundle.path.resolve():
            return primary
        loaded = Recommender.load(path, None, config.snapshot, precompute_users=True)
        loaded.live = LiveOverlay(loaded.online.data.live_seq if loaded.online is not None else 0)
        if self.log is not None:
            self._catch_up(loaded)
        return loaded

    def start_following(self) -> None:
        """Follow the log in a background thread (replicas do, once configured)."""
        if self.log is not None and self.follower is None:
            self.follower = Follower(self, self.log).start()

    async def write(self, kind: str, records: list[dict[str, Any]], replace: bool = False) -> LiveAck:
        """Write one batch through the writer; returns once it is durable (and, within
        VISIBLE_WAIT_S, merged on this replica: its next answer reflects the batch)."""
        if self.log is None or self._config is None or self._config.store is None:
            raise ReadOnlyService(f"{self.domain} is served read-only (no store to write to)")
        batch = LiveBatch(kind, records, source=f"POST /{self.domain}/{kind}",
                          create_items=self._config.create_items, replace=replace)
        answer = await self.log.append(batch)
        if isinstance(answer, Exception):
            raise answer
        metrics_for(self.domain).record_write(kind, answer.accepted)
        await self.applied.wait(answer.seq, lambda: self.live_seq() or 0, VISIBLE_WAIT_S)
        return answer

    # -- online figures and experiment control (through the writer) ---------------------
    def _writer_log(self) -> LiveLog:
        if self.log is None or self._config is None or self._config.store is None:
            raise NotFoundError(f"{self.domain} is served without its store: no impressions, events or "
                                f"experiments to report (serve it with `recengine serve`)")
        return self.log

    async def experiment_report(self, k: int = 10, window_hours: float | None = None) -> ExperimentReport:
        """The running (else latest) experiment's figures, from the logged data; 404 if none ran."""
        raw = await self._report("experiment_report", self.domain, None, k, window_hours)
        return ExperimentReport.model_validate(raw)

    async def online_summary(self, hours: float = 24.0, k: int = 10,
                             window_hours: float | None = None) -> OnlineSummary:
        raw = await self._report("online_figures", self.domain, hours, k, window_hours)
        return OnlineSummary.model_validate(raw)

    async def _report(self, method: str, *args: Any) -> Any:
        """The writer's ``method(*args)`` after this replica's impressions are flushed; concurrent
        asks for the same report share one computation that starts after each of them."""
        log = self._writer_log()

        async def compute() -> Any:
            await asyncio.to_thread(self._flush_impressions)
            return await asyncio.to_thread(log.call, method, *args)

        return await self._reports.run((method, *args), compute)

    async def start_experiment(self, spec: ExperimentSpec) -> ExperimentSpec:
        """Record ``spec`` (arms resolved against this domain's models); every replica follows."""
        from recengine.online.control import resolve_arms

        resolved = resolve_arms(spec, self.recommender.bundle.path.parent.parent)
        recorded = await asyncio.to_thread(self._writer_log().call, "record_experiment", resolved.model_dump())
        return ExperimentSpec.model_validate(recorded)

    async def stop_experiment(self, winner: str | None) -> ExperimentSpec:
        recorded = await asyncio.to_thread(self._writer_log().call, "stop_experiment", self.domain, winner)
        return ExperimentSpec.model_validate(recorded)

    def _flush_impressions(self) -> None:
        """What this replica showed so far goes to the store before a report reads it."""
        if self.impressions is not None:
            self.impressions.flush()

    def check_health(self) -> None:
        """Raise when no model or no snapshot is loaded (Ray Serve restarts the replica)."""
        recommender = self.recommender
        if recommender.online is None:
            raise NotReady(f"{self.domain}: no published snapshot loaded")

    def health(self) -> Health:
        recommender = self._recommender
        if recommender is None:
            return Health(status="loading", domain=self.domain)
        live = recommender.live
        writer_seq = self.follower.writer_seq if self.follower is not None else None
        return Health(status="ok", domain=self.domain, model=f"{recommender.bundle.name}/{recommender.bundle.version}",
                      snapshot_version=recommender.online.version if recommender.online else None,
                      live_seq=live.seq if live is not None else None,
                      live_batches=(live.seq - live.base_seq) if live is not None else None,
                      writer_seq=writer_seq,
                      lag_batches=max(0, writer_seq - live.seq) if live is not None and writer_seq else None,
                      experiment=self.experiment.id if self.experiment is not None else None)

    def model_info(self, show_path: bool = False) -> ModelInfo:
        """What is serving; the bundle's path on this server only with ``show_path`` (operators)."""
        recommender = self.recommender
        bundle = recommender.bundle
        return ModelInfo(domain=self.domain, bundle=bundle.name, version=bundle.version,
                         path=str(bundle.path) if show_path else None,
                         created_at=bundle.manifest.get("created_at"),
                         snapshot_version=recommender.online.version if recommender.online else None,
                         items=len(recommender.item_ids), cold_items=recommender.cold_items, users=len(bundle.users),
                         retrieval=recommender.retrieval_info(), offline=offline_metrics(bundle.metrics),
                         reads_need_key=bool(self._config and self._config.require_key_for_reads))

    def user_history(self, user_id: str, limit: int) -> UserHistoryResponse:
        """The user's latest ``limit`` events, newest first, as this replica sees them
        (snapshot and live overlay); ``NotFoundError`` (404) for a user the model does not know."""
        events = self.recommender.recent_events(user_id, limit)
        if events is None:
            raise NotFoundError(f"unknown user {user_id!r}: no trained id, no stored or live events")
        return UserHistoryResponse(user_id=user_id, events=[
            RecentEvent(item_id=e.item_id, title=e.title, event_type=e.event_type,
                        ts=None if e.ts is None else e.ts.replace(tzinfo=e.ts.tzinfo or UTC)) for e in events])

    def validate(self, request: RecommendRequest) -> None:
        """Raise ``RequestError`` (422) when the current model cannot answer ``request`` as
        asked (a filter on an unknown column, a value of the wrong kind): called before a
        request joins a batch, so that a bad one never reaches its neighbours."""
        self.recommender.check_request(_engine_request(request))

    def recommend_many(self, requests: list[RecommendRequest]) -> list[RecommendResponse | Exception]:
        """Each request's response, or the exception it alone raised, in request order; under
        an experiment, by the arm of the request's user (or both, interleaved). What each
        answer showed is logged as its impressions."""
        recommender, arms = self.recommender, self._arms  # one model (and arms) for the whole batch
        engine_requests = [_engine_request(r) for r in requests]
        ids = [r._request_id or uuid.uuid4().hex for r in requests]
        if arms is None:
            model = f"{recommender.bundle.name}/{recommender.bundle.version}"
            answers = [Answer(items, model, None) for items in recommender.answer_many(engine_requests)]
        else:
            answers = answer_in_experiment(arms, engine_requests, ids)
        snapshot = recommender.online.version if recommender.online else None
        experiment = arms.spec.id if arms is not None else None
        responses: list[RecommendResponse | Exception] = []
        for request, request_id, found in zip(requests, ids, answers):
            items = found.items
            if isinstance(items, Exception):
                responses.append(items)
                continue
            model = found.model if isinstance(found.model, str) else " + ".join(sorted(set(found.model)))
            responses.append(RecommendResponse(
                user_id=request.user_id, fallback=items.fallback, model=model, snapshot_version=snapshot,
                items=[RecommendedItem(item_id=i.item_id, score=i.score, title=i.title, reasons=i.reasons)
                       for i in items],
                notes=items.notes, request_id=request_id, experiment=experiment, arm=found.arm,
            ))
            if self.impressions is not None and request.log_impressions:
                self.impressions.add(request_id, request.user_id, [i.item_id for i in items], found.model,
                                     experiment, found.item_arms or found.arm)
        return responses

    def similar(self, item_id: str, k: int) -> list[RecommendedItem]:
        return [RecommendedItem(item_id=i.item_id, score=i.score, title=i.title, reasons=i.reasons)
                for i in self.recommender.similar(item_id, k)]


BASELINES = ("popularity", "random", "mean_rating")  # metrics.json's baseline entries (recengine.evaluate)


def offline_metrics(metrics: dict[str, Any]) -> OfflineMetrics | None:
    """The figures of a bundle's metrics.json the API shows (numbers only: no training
    history, no timings); None when the bundle has no test metrics."""
    def numbers(section: Any) -> dict[str, float]:
        if not isinstance(section, dict):
            return {}
        return {str(k): float(v) for k, v in section.items() if isinstance(v, int | float) and not isinstance(v, bool)}

    def count(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    test = numbers(metrics.get("test"))
    if not test:
        return None
    baselines = {name: numbers(metrics[name]) for name in BASELINES if numbers(metrics.get(name))}
    protocol = metrics.get("protocol")
    return OfflineMetrics(protocol=protocol if isinstance(protocol, str) else None, valid=numbers(metrics.get("valid")),
                          test=test, baselines=baselines, test_users=count(metrics.get("test_users")),
                          best_epoch=count(metrics.get("best_epoch")), epochs_run=count(metrics.get("epochs_run")))


def _moment(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _engine_request(request: RecommendRequest) -> Request:
    context = request.context
    entries = request.history_entries()
    history = None if entries is None else [entry.item_id for entry in entries]
    types = None
    if entries is not None and any(entry.event_type for entry in entries):
        types = [entry.event_type or "" for entry in entries]
    return Request(request.user_id or "", request.k, context.exclude, context.filters, context.time, request.explain,
                   history, types)


def bundle_path(models_dir: str | Path, name: str) -> Path:
    """The newest version directory of a bundle (for configs that pin a version)."""
    from recengine.bundle import resolve_bundle

    return resolve_bundle(name, models_dir)
