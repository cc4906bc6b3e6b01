"""The HTTP API of one domain, as a FastAPI app.

The same app runs behind Ray Serve (``recengine.serve.deployment``) and directly in tests.
Client mistakes get 4xx with a reason (422 validation or a ``RequestError``, 404 unknown
item), a service that has no model yet gets 503, and an unknown user gets the popularity
fallback (200). Any other exception is a bug: FastAPI answers 500 and the server logs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from recengine.errors import NotFoundError, RequestError
from recengine.serve.schemas import MAX_K, Health, ModelInfo, RecommendedItem, RecommendRequest, RecommendResponse
from recengine.serve.service import NotReady, RecommendService

Recommend = Callable[[RecommendRequest], Awaitable[RecommendResponse]]


def build_api(domain: str, get_service: Callable[[], RecommendService],
              recommend: Recommend | None = None) -> FastAPI:
    """A FastAPI app answering for ``domain``; ``recommend`` may be a batched coroutine."""
    app = FastAPI(title=f"recengine · {domain}", description=f"Recommendations for the {domain} domain.")

    async def direct(request: RecommendRequest) -> RecommendResponse:
        return get_service().recommend_many([request])[0]

    answer = recommend or direct

    @app.exception_handler(NotReady)
    async def not_ready(_: Request, exc: NotReady) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend_items(request: RecommendRequest) -> RecommendResponse:
        """Top-k items for a user, with scores and reasons; unknown users get popular items."""
        try:
            return await answer(request)
        except RequestError as exc:  # e.g. a filter on a column the catalogue lacks
            raise HTTPException(status_code=422, detail=str(exc)) from None

    @app.get("/similar/{item_id}", response_model=list[RecommendedItem])
    async def similar(item_id: str = Path(..., min_length=1),
                      k: int = Query(10, ge=1, le=MAX_K)) -> list[RecommendedItem]:
        """Items closest to ``item_id`` in the model's item space."""
        try:
            return get_service().similar(item_id, k)
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    @app.get("/health", response_model=Health)
    async def health() -> JSONResponse:
        """200 when a model and snapshot are loaded, 503 otherwise."""
        state = get_service().health()
        return JSONResponse(status_code=200 if state.status == "ok" else 503, content=state.model_dump())

    @app.get("/model", response_model=ModelInfo)
    async def model() -> ModelInfo:
        """Which bundle (name, version) and snapshot version are serving."""
        return get_service().model_info()

    return app
