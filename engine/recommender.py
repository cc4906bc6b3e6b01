"""``Recommender``: retrieve → score → rank, with reasons.

1. Retrieve the top-N candidates over the whole catalogue with one matrix product of the
   users' vectors against the cached item matrix (exact; an ANN index could replace it).
2. Score them with the bundle's interactor (the same product for ``dot``; target attention
   over the history for ``attention``).
3. Run the ranker chain (filters, diversity, freshness, fallback, top-k) in config order.

Items that reached the published snapshot after training (no events, so no learned id
embedding) join the catalogue through the item tower applied to their attributes and
vectors: cold items are recommendable from the first request. Each item carries reasons:
the most-attended history item (attention), the most similar history item (dot), or
"popular" (fallback). Unknown users get the fallback, never an error.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from threadpoolctl import ThreadpoolController

from engine.bundle import Bundle, load_bundle
from engine.components import Candidates, Catalog, RankContext, Ranker, SegmentPopularity, l2_normalise
from engine.config import ComponentRef
from engine.data import encode_rows
from engine.plugin_manager import get_plugin_manager


MIN_SEGMENT_USERS = 20
MAX_SEGMENT_VALUES = 100


@dataclass
class Recommendation:
    item_id: str
    score: float
    reasons: list[str] = field(default_factory=list)
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "reasons": self.reasons, "title": self.title}


@dataclass
class Request:
    """One recommendation request (what the HTTP API and the CLI both build)."""

    user_id: str
    k: int = 10
    exclude: list[str] = field(default_factory=list)
    filters: dict[str, list[Any]] = field(default_factory=dict)
    now: datetime | None = None
    explain: bool = True


def build_catalog(item_ids: list[str], frame: pl.DataFrame, item_matrix: np.ndarray, popularity: np.ndarray,
                  index: dict[str, int] | None = None) -> Catalog:
    """Item attributes aligned to dense indices (row 0 = padding) for rankers.

    ``index`` maps item id → dense index (built from ``item_ids`` when not given). Cells keep
    the Python values of ``Series.to_list()`` (str, int, list, None), filled without a Python
    loop per item: at 1M items such loops cost seconds of start-up.
    """
    size = len(item_ids) + 1
    if index is None:
        index = {item: i + 1 for i, item in enumerate(item_ids)}
    frame_ids = frame["item_id"].to_list()
    rows = np.fromiter(map(index.get, frame_ids, repeat(0)), dtype=np.int64, count=len(frame_ids))
    columns: dict[str, np.ndarray] = {}
    for name in frame.columns:
        series = frame[name]
        if series.dtype.is_temporal():
            column = np.full(size, np.datetime64("NaT"), dtype="datetime64[us]")
            column[rows] = series.to_numpy().astype("datetime64[us]")
        else:
            column = np.empty(size, dtype=object)
            column[rows] = np.fromiter(series.to_list(), dtype=object, count=series.len())
        column[0] = np.datetime64("NaT") if column.dtype.kind == "M" else None
        columns[name] = column
    ids = np.empty(size, dtype=object)
    ids[0] = ""
    ids[1:] = item_ids
    return Catalog(item_ids=ids, columns=columns, vectors=l2_normalise(item_matrix),
                   popularity=popularity.astype(np.float64), titles=columns.get("title"))


def build_rankers(refs: list[ComponentRef]) -> list[Ranker]:
    manager = get_plugin_manager()
    rankers = []
    for ref in refs:
        ranker_class = manager.get("rankers", ref.name)
        rankers.append(ranker_class(ranker_class.Config(**ref.params)))
    return rankers


_THREAD_POOLS: ThreadpoolController | None = None


def thread_pools() -> ThreadpoolController:
    """The process's native thread pools (torch's OpenMP, numpy's BLAS), found once."""
    global _THREAD_POOLS
    if _THREAD_POOLS is None:
        _THREAD_POOLS = ThreadpoolController()
    return _THREAD_POOLS


def default_snapshot(bundle: Bundle) -> Path | None:
    """The published snapshot beside the store the bundle trained on, if there is one."""
    store = bundle.manifest.get("store")
    if not store:
        return None
    root = Path(store).with_name(Path(store).stem + ".snapshots")
    return root if (root / "CURRENT").exists() else None


class Recommender:
    """Recommendations from a model bundle, with live histories and cold items from a snapshot."""

    def __init__(self, bundle: Bundle, online: Any | None = None, rankers: list[ComponentRef] | None = None,
                 candidates: int | None = None, threads: int | None = 1) -> None:
        """``threads`` caps torch's and BLAS's thread pools while a request runs (``None``:
        leave them as the process has them). One request's tensors are tiny, so extra threads
        only add hand-offs; and two pools of spinning threads (torch's OpenMP, numpy's
        OpenBLAS) fighting over 2 busy cores made requests 30x slower (p50 ~14 ms → ~450 ms
        at 100k items). Scale with processes or replicas, not intra-op threads."""
        self.bundle = bundle
        self.threads = threads
        self.online = online
        self.model = bundle.model.eval()
        self.device = self.model.device
        self._lock = threading.Lock()  # one torch forward at a time per process
        self.max_history = bundle.config.model.max_history
        self.item_ids = list(bundle.items.ids)
        with torch.no_grad():
            matrix = self.model.item_matrix().float().cpu().numpy()
        matrix[0] = 0.0
        popularity = bundle.popularity.astype(np.float64)
        frame = bundle.item_frame
        if online is not None:
            frame = online.data.items
            matrix, popularity = self._add_cold_items(frame, matrix, popularity)
        self.item_matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.item_matrix_t = torch.from_numpy(self.item_matrix).to(self.device)
        self.item_index = dict(bundle.items.index)  # a copy: cold items join it
        self.item_index.update((item, i) for i, item in enumerate(self.item_ids[len(bundle.items):],
                                                                  start=len(bundle.items) + 1))
        self.catalog = build_catalog(self.item_ids, frame, self.item_matrix, popularity, self.item_index)
        if threads is not None:
            thread_pools()  # find the pools now, not during the first request
        self.rankers = build_rankers(rankers if rankers is not None else bundle.config.ranking.rankers)
        self.num_candidates = candidates or bundle.config.ranking.candidates
        self.cold_items = len(self.item_ids) - len(bundle.items)
        self._segments: dict[tuple, SegmentPopularity | None] = {}

    @classmethod
    def load(cls, name_or_path: str | Path, models: str | Path | None = None, snapshot: str | Path | None = None,
             **kwargs: Any) -> "Recommender":
        """Load a bundle; histories and cold items come from ``snapshot`` (default: the
        published snapshot beside the store the bundle trained on, when there is one)."""
        bundle = load_bundle(name_or_path, models)
        root = Path(snapshot) if snapshot else default_snapshot(bundle)
        online = None
        if root is not None:
            from feature_store import OnlineStore

            online = OnlineStore(root)
        return cls(bundle, online, **kwargs)

    # -- catalogue ---------------------------------------------------------------------
    def _add_cold_items(self, frame: pl.DataFrame, matrix: np.ndarray, popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encode snapshot items the model never saw with the item tower (ids unknown = 0)."""
        new = frame.filter(~pl.col("item_id").is_in(self.bundle.items.ids))
        if new.height == 0:
            return matrix, popularity
        table = self.bundle.item_table
        vectors = {}
        for name in table.vectors:
            try:
                found = self.online.item_vectors(name)
                vectors[name] = (found.ids, found.matrix)
            except KeyError:
                continue
        arrays = encode_rows(new, table, vectors, "item_id")
        for name, width in ((n, v.shape[1]) for n, v in table.vectors.items()):
            arrays.setdefault(f"vec:{name}", np.zeros((new.height, width), dtype=np.float32))
        with torch.no_grad():
            batch = {"ids": torch.zeros(new.height, dtype=torch.long, device=self.device),
                     **{k: torch.as_tensor(v, device=self.device) for k, v in arrays.items()}}
            cold = self.model.item_encoder(batch).vector.float().cpu().numpy()
        self.item_ids += new["item_id"].to_list()
        return np.vstack([matrix, cold]), np.concatenate([popularity, np.zeros(new.height)])

    # -- request pieces ----------------------------------------------------------------
    def user_history(self, user_id: str) -> tuple[int, np.ndarray, list[str], list[datetime], dict[str, Any]]:
        """Dense user index, history item indices (oldest first) and event types/times."""
        user_index = self.bundle.users.index.get(user_id, 0)
        if self.online is not None:
            features = self.online.user(user_id)
            if features is None:
                return user_index, np.zeros(0, dtype=np.int64), [], [], {}
            encoded = np.array([self.item_index.get(i, 0) for i in features.history], dtype=np.int64)
            keep = encoded > 0
            types = [t for t, k in zip(features.history_event_types, keep) if k]
            times = [t for t, k in zip(features.history_ts, keep) if k]
            return user_index, encoded[keep], types, times, features.attributes
        row = self.bundle.histories[user_index] if user_index else np.zeros(0, dtype=np.int64)
        return user_index, row[row > 0], [], [], {}

    def _seen(self, user_id: str, event_types: list[str] | None) -> np.ndarray:
        indices = np.array([self.item_index.get(i, 0) for i in self.online.seen(user_id, event_types)], dtype=np.int64)
        return indices[indices > 0]

    def history_of(self, user_id: str) -> tuple[list[str], list[str]]:
        """Another user's recent item ids and event types (for graph rankers such as
        friends-of-friends); empty without a snapshot."""
        if self.online is None:
            return [], []
        features = self.online.user(user_id)
        return ([], []) if features is None else (features.history, features.history_event_types)

    def segment_popularity(self, attributes: dict[str, Any]) -> SegmentPopularity | None:
        """Popularity among users sharing a new user's attributes (cached per segment).

        Attributes are narrowed from the coarsest (fewest distinct values) to finer ones as
        long as at least ``MIN_SEGMENT_USERS`` users remain; None without a snapshot or
        without any usable attribute.
        """
        if self.online is None or not attributes:
            return None
        users = self.online.data.users
        usable = [(users[c].n_unique(), c) for c, v in attributes.items()
                  if v is not None and c in users.columns and users[c].dtype == pl.String
                  and users[c].n_unique() <= MAX_SEGMENT_VALUES]
        mask = pl.Series([True] * users.height)
        chosen: list[tuple[str, Any]] = []
        for _, column in sorted(usable):
            narrower = mask & (users[column] == attributes[column])
            if narrower.sum() >= MIN_SEGMENT_USERS:
                mask, chosen = narrower, chosen + [(column, attributes[column])]
        key = tuple(chosen)
        if key not in self._segments:
            self._segments[key] = self._count_segment(users.filter(mask)["user_id"], chosen) if chosen else None
        return self._segments[key]

    def _count_segment(self, user_ids: pl.Series, chosen: list[tuple[str, Any]]) -> SegmentPopularity:
        histories = self.online.data.histories
        items = histories.filter(pl.col("user_id").is_in(user_ids.implode()))["items"].explode().drop_nulls()
        counts = np.zeros(len(self.item_ids) + 1, dtype=np.float64)
        indices = np.array([self.item_index.get(i, 0) for i in items.to_list()], dtype=np.int64)
        np.add.at(counts, indices[indices > 0], 1.0)
        order = np.argsort(-counts[1:], kind="stable").astype(np.int64) + 1
        return SegmentPopularity(counts, order, ", ".join(f"{c}: {v}" for c, v in chosen))

    def _score_batch(self, users: list[int], histories: list[np.ndarray]) -> list[Candidates]:
        """Encode users together, retrieve each one's top-N, score them with the interactor."""
        padded = np.zeros((len(users), self.max_history), dtype=np.int64)
        for row, history in enumerate(histories):
            tail = history[-self.max_history:]
            # items beyond the model's id range (cold items) have no learned embedding
            tail = np.where(tail <= len(self.bundle.items), tail, 0)
            if tail.size:
                padded[row, -tail.size:] = tail
        n = min(self.num_candidates, self.item_matrix.shape[0] - 1)
        with self._lock, torch.no_grad():
            encoded = self.model.encode_users(torch.as_tensor(users, device=self.device),
                                              torch.as_tensor(padded, device=self.device))
            vectors = encoded.vector.float().cpu().numpy()
            retrieval = vectors @ self.item_matrix.T  # [B, N+1]
            retrieval[:, 0] = -np.inf
            if n < retrieval.shape[1] - 1:  # the n largest, without negating a copy of [B, N+1]
                top = np.argpartition(retrieval, -n, axis=1)[:, -n:]
            else:
                top = np.tile(np.arange(1, retrieval.shape[1]), (len(users), 1))
            top_t = torch.as_tensor(top, device=self.device)
            items_t = self.item_matrix_t[top_t]
            scores = self.model.interactor.score(encoded, items_t).float().cpu().numpy()
            weights = self.model.interactor.explain(encoded, items_t)
            weights = None if weights is None else weights.float().cpu().numpy()
        results = []
        for row in range(len(users)):
            order = np.argsort(-scores[row], kind="stable")
            items = top[row][order].astype(np.int64)
            reasons = self._reasons(items, histories[row], padded[row],
                                    None if weights is None else weights[row][order])
            results.append(Candidates(items, scores[row][order].astype(np.float32), reasons))
        return results

    def _reasons(self, items: np.ndarray, history: np.ndarray, padded: np.ndarray,
                 weights: np.ndarray | None) -> list[list[str]]:
        if history.size == 0:
            return [[] for _ in range(items.size)]
        if weights is not None:  # attention: the history item the candidate attended to most
            best = weights.argmax(axis=1)
            return [[f"attention {weights[i, b]:.2f} on {self.catalog.title(int(padded[b]))}"]
                    for i, b in enumerate(best.tolist())]
        recent = history[-self.max_history:]
        similarity = self.catalog.vectors[items] @ self.catalog.vectors[recent].T  # [K, H]
        again = items[:, None] == recent[None, :]
        similarity[again] = -np.inf  # an item is not "similar to" itself
        best = similarity.argmax(axis=1)
        # flags as Python lists: numpy scalar calls per candidate cost ~0.5 ms a request
        seen = again.any(axis=1).tolist()
        similar = np.isfinite(similarity[np.arange(items.size), best]).tolist()
        return [(["in your history"] if s else []) + ([f"similar to {self.catalog.title(int(recent[b]))}"] if f else [])
                for s, f, b in zip(seen, similar, best.tolist())]

    # -- public API --------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 10, *, exclude: list[str] | None = None,
                  filters: dict[str, list[Any]] | None = None, now: datetime | None = None,
                  explain: bool = True) -> list[Recommendation]:
        """The top ``k`` items for a user; unknown users get popular items with that reason."""
        request = Request(user_id, k, list(exclude or []), dict(filters or {}), now, explain)
        return self.recommend_many([request])[0]

    def recommend_many(self, requests: list[Request]) -> list[list[Recommendation]]:
        """Several requests with one batched encode and retrieval (what serving batches)."""
        with self._thread_limit():
            return self._recommend_many(requests)

    def _thread_limit(self) -> AbstractContextManager[Any]:
        return nullcontext() if self.threads is None else thread_pools().limit(limits=self.threads)

    def _recommend_many(self, requests: list[Request]) -> list[list[Recommendation]]:
        for request in requests:
            if request.k < 1:
                raise ValueError(f"k must be at least 1, got {request.k}")
        looked_up = [self.user_history(r.user_id) for r in requests]
        known = [i for i, (index, history, *_) in enumerate(looked_up) if index > 0 or history.size > 0]
        scored = dict(zip(known, self._score_batch([looked_up[i][0] for i in known],
                                                   [looked_up[i][1] for i in known]))) if known else {}
        return [self._rank(request, looked_up[i], scored.get(i, Candidates.empty()), i in scored)
                for i, request in enumerate(requests)]

    def _rank(self, request: Request, looked_up: tuple, candidates: Candidates, known: bool) -> list[Recommendation]:
        _, history, types, times, attributes = looked_up
        excluded = np.array([self.item_index.get(i, 0) for i in request.exclude], dtype=np.int64)
        context = RankContext(
            user_id=request.user_id, k=request.k, catalog=self.catalog, history=history,
            history_event_types=types, history_ts=times, known_user=known, now=request.now,
            exclude=excluded[excluded > 0], filters=request.filters, user_attributes=attributes,
            item_index=self.item_index, history_of=self.history_of,
            segment_popularity=lambda: self.segment_popularity(attributes),
            seen=None if self.online is None else lambda types: self._seen(request.user_id, types),
        )
        for ranker in self.rankers:
            candidates = ranker.rank(candidates, context)
        candidates = candidates.take(np.arange(min(request.k, len(candidates))))
        return [
            Recommendation(str(self.catalog.item_ids[i]), float(s), list(r) if request.explain else [],
                           self.catalog.title(int(i)))
            for i, s, r in zip(candidates.items.tolist(), candidates.scores.tolist(), candidates.reasons)
        ]

    def similar(self, item_id: str, k: int = 10) -> list[Recommendation]:
        """Items whose representations are closest (cosine) to ``item_id``'s."""
        index = self.item_index.get(item_id)
        if index is None:
            raise KeyError(f"unknown item {item_id!r}")
        with self._thread_limit():
            similarity = self.catalog.vectors @ self.catalog.vectors[index]
        similarity[[0, index]] = -np.inf
        n = max(1, min(k, similarity.shape[0] - 2))
        top = np.argpartition(-similarity, n - 1)[:n]
        top = top[np.argsort(-similarity[top], kind="stable")]
        return [Recommendation(str(self.catalog.item_ids[i]), float(similarity[i]),
                               [f"similar to {self.catalog.title(index)}"], self.catalog.title(int(i)))
                for i in top.tolist()]
