"""One domain's recommendation service: loads a bundle + snapshot, answers requests, and
swaps to a newer bundle or snapshot without dropping requests (``configure``).

A batch of requests is answered request by request (:meth:`RecommendService.recommend_many`
returns each one's response or error), so one bad request never fails its neighbours."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from recengine.errors import EngineError
from recengine.recommender import Recommender, Request
from recengine.serve.schemas import Health, ModelInfo, RecommendedItem, RecommendRequest, RecommendResponse


class ServeConfig(BaseModel):
    """What a replica serves; passed as Ray Serve ``user_config`` so it can change live."""

    bundle: str = Field(description="Bundle directory (models/<name>/<version>) or name.")
    models: str | None = Field(None, description="Models root when ``bundle`` is a name.")
    snapshot: str | None = Field(None, description="Snapshot root; default: beside the bundle's store.")
    snapshot_version: int | None = Field(
        None, description="Published version at deploy time; a new value makes replicas reload the snapshot.")


class NotReady(EngineError):
    """The service has no model loaded yet (health check fails, requests get 503)."""


class RecommendService:
    """Holds the current :class:`Recommender`; requests read one reference, so a swap is atomic."""

    def __init__(self, domain: str, config: ServeConfig | dict[str, Any] | None = None) -> None:
        self.domain = domain
        self._recommender: Recommender | None = None
        self._config: ServeConfig | None = None
        self._swap = threading.Lock()
        if config is not None:
            self.configure(config)

    @property
    def recommender(self) -> Recommender:
        recommender = self._recommender
        if recommender is None:
            raise NotReady(f"{self.domain}: no model loaded")
        return recommender

    def configure(self, config: ServeConfig | dict[str, Any]) -> None:
        """Load the configured bundle and snapshot beside the current ones, then swap.

        Requests in flight finish on the model they started with. A config equal to the
        current one is a no-op; a bad one raises and leaves the current model serving.
        """
        config = config if isinstance(config, ServeConfig) else ServeConfig.model_validate(config)
        with self._swap:
            if config == self._config and self._recommender is not None:
                return
            # every user's vector encoded once per snapshot: requests skip the user encoder
            loaded = Recommender.load(config.bundle, config.models, config.snapshot, precompute_users=True)
            self._recommender, self._config = loaded, config

    def check_health(self) -> None:
        """Raise when no model or no snapshot is loaded (Ray Serve restarts the replica)."""
        recommender = self.recommender
        if recommender.online is None:
            raise NotReady(f"{self.domain}: no published snapshot loaded")

    def health(self) -> Health:
        recommender = self._recommender
        if recommender is None:
            return Health(status="loading", domain=self.domain)
        return Health(status="ok", domain=self.domain, model=f"{recommender.bundle.name}/{recommender.bundle.version}",
                      snapshot_version=recommender.online.version if recommender.online else None)

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
    return Request(request.user_id, request.k, context.exclude, context.filters, context.time, request.explain)


def bundle_path(models_dir: str | Path, name: str) -> Path:
    """The newest version directory of a bundle (for configs that pin a version)."""
    from recengine.bundle import resolve_bundle

    return resolve_bundle(name, models_dir)
