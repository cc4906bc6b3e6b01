"""One domain's recommendation service: loads a bundle + snapshot, answers requests, and
swaps to a newer bundle or snapshot without dropping requests (``configure``).

A batch of requests is answered request by request (:meth:`RecommendService.recommend_many`
returns each one's response or error), so one bad request never fails its neighbours."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from recengine.api_keys import ApiKeys
from recengine.errors import EngineError
from recengine.feature_store.live_log import LiveAck, LiveBatch, LiveChange
from recengine.live_overlay import LiveOverlay
from recengine.recommender import Recommender, Request
from recengine.serve.live import Follower, LiveLog, WriterUnavailable
from recengine.serve.schemas import Health, ModelInfo, RecommendedItem, RecommendRequest, RecommendResponse


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


class NotReady(EngineError):
    """The service has no model loaded yet (health check fails, requests get 503)."""


class ReadOnlyService(EngineError):
    """Writes to a domain served without its store (405)."""


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
        self._keys: ApiKeys | None = None
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

    def _catch_up(self, recommender: Recommender) -> None:
        """Apply what the log committed after ``recommender``'s snapshot (before it serves)."""
        assert self.log is not None and recommender.live is not None
        while True:
            try:
                found = self.log.changes_since(recommender.live.seq)
            except WriterUnavailable:
                return  # the follower catches up once the writer is back
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
        """Load the newly published snapshot (same bundle) and swap, the overlay rebased on it."""
        if self._config is not None:
            self.configure(self._config, force=True)

    def apply_changes(self, changes: list[LiveChange]) -> None:
        recommender = self._recommender
        if recommender is not None:
            _apply(recommender, changes)

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
        deadline = time.monotonic() + VISIBLE_WAIT_S
        while (self.live_seq() or 0) < answer.seq and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        return answer

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
                      lag_batches=max(0, writer_seq - live.seq) if live is not None and writer_seq else None)

    def model_info(self, show_path: bool = False) -> ModelInfo:
        """What is serving; the bundle's path on this server only with ``show_path`` (operators)."""
        recommender = self.recommender
        bundle = recommender.bundle
        return ModelInfo(domain=self.domain, bundle=bundle.name, version=bundle.version,
                         path=str(bundle.path) if show_path else None,
                         created_at=bundle.manifest.get("created_at"),
                         snapshot_version=recommender.online.version if recommender.online else None,
                         items=len(recommender.item_ids), cold_items=recommender.cold_items, users=len(bundle.users),
                         retrieval=recommender.retrieval_info())

    def validate(self, request: RecommendRequest) -> None:
        """Raise ``RequestError`` (422) when the current model cannot answer ``request`` as
        asked (a filter on an unknown column, a value of the wrong kind): called before a
        request joins a batch, so that a bad one never reaches its neighbours."""
        self.recommender.check_request(_engine_request(request))

    def recommend_many(self, requests: list[RecommendRequest]) -> list[RecommendResponse | Exception]:
        """Each request's response, or the exception it alone raised, in request order."""
        recommender = self.recommender  # one model for the whole batch, even if a swap happens
        answers = recommender.answer_many([_engine_request(r) for r in requests])
        model = f"{recommender.bundle.name}/{recommender.bundle.version}"
        snapshot = recommender.online.version if recommender.online else None
        responses: list[RecommendResponse | Exception] = []
        for request, items in zip(requests, answers):
            if isinstance(items, Exception):
                responses.append(items)
                continue
            responses.append(RecommendResponse(
                user_id=request.user_id, fallback=items.fallback, model=model, snapshot_version=snapshot,
                items=[RecommendedItem(item_id=i.item_id, score=i.score, title=i.title, reasons=i.reasons)
                       for i in items],
                notes=items.notes,
            ))
        return responses

    def similar(self, item_id: str, k: int) -> list[RecommendedItem]:
        return [RecommendedItem(item_id=i.item_id, score=i.score, title=i.title, reasons=i.reasons)
                for i in self.recommender.similar(item_id, k)]


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
