"""``Recommender``: retrieve → score → rank, with reasons, for one user at a time.

1. Retrieve the top-N candidates over the whole catalogue with one matrix-vector product
   of the user's vector against the cached item matrix (exact; an ANN index could replace it).
2. Score them with the bundle's interactor (the same product for ``dot``; target attention
   over the history for ``attention``).
3. Run the ranker chain (filters, diversity, freshness, fallback, top-k) in config order.
Each item carries reasons: the most-attended history item (attention), the most similar
history item (dot), or "popular" (fallback). Unknown users get the fallback, never an error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.bundle import Bundle, load_bundle
from engine.components import Candidates, Catalog, RankContext, Ranker, l2_normalise
from engine.config import ComponentRef
from engine.plugin_manager import get_plugin_manager


@dataclass
class Recommendation:
    item_id: str
    score: float
    reasons: list[str] = field(default_factory=list)
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "reasons": self.reasons, "title": self.title}


def build_catalog(bundle: Bundle, item_matrix: np.ndarray) -> Catalog:
    """Item attributes aligned to dense indices (row 0 = padding) for rankers."""
    frame = bundle.item_frame
    positions = bundle.items.encode(frame["item_id"])
    size = len(bundle.items) + 1
    columns: dict[str, np.ndarray] = {}
    for name in frame.columns:
        series = frame[name]
        if series.dtype.is_temporal():
            column = np.full(size, np.datetime64("NaT"), dtype="datetime64[us]")
            column[positions] = series.cast(series.dtype).to_numpy().astype("datetime64[us]")
        else:
            column = np.empty(size, dtype=object)
            for position, value in zip(positions.tolist(), series.to_list()):
                column[position] = value
        columns[name] = column
    ids = np.array([""] + bundle.items.ids, dtype=object)
    titles = columns.get("title")
    return Catalog(item_ids=ids, columns=columns, vectors=l2_normalise(item_matrix),
                   popularity=bundle.popularity.astype(np.float64), titles=titles)


def build_rankers(refs: list[ComponentRef]) -> list[Ranker]:
    manager = get_plugin_manager()
    rankers = []
    for ref in refs:
        ranker_class = manager.get("rankers", ref.name)
        rankers.append(ranker_class(ranker_class.Config(**ref.params)))
    return rankers


class Recommender:
    """Recommendations from a model bundle, optionally with live histories from a snapshot."""

    def __init__(self, bundle: Bundle, online: Any | None = None, rankers: list[ComponentRef] | None = None,
                 candidates: int | None = None) -> None:
        self.bundle = bundle
        self.online = online
        self.model = bundle.model.eval()
        self.device = self.model.device
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads
        with torch.no_grad():
            self.item_matrix_t = self.model.item_matrix()
        self.item_matrix = self.item_matrix_t.cpu().numpy()
        self.item_matrix[0] = 0.0
        self.catalog = build_catalog(bundle, self.item_matrix)
        self.rankers = build_rankers(rankers if rankers is not None else bundle.config.ranking.rankers)
        self.num_candidates = candidates or bundle.config.ranking.candidates
        self.max_history = bundle.config.model.max_history

    @classmethod
    def load(cls, name_or_path: str | Path, models: str | Path | None = None, snapshot: str | Path | None = None,
             **kwargs: Any) -> "Recommender":
        online = None
        if snapshot:
            from feature_store import OnlineStore

            online = OnlineStore(snapshot)
        return cls(load_bundle(name_or_path, models), online, **kwargs)

    # -- request pieces ----------------------------------------------------------------
    def user_history(self, user_id: str) -> tuple[int, np.ndarray, list[str], list[datetime], dict[str, Any]]:
        """Dense user index, history item indices (oldest first) and event types/times."""
        user_index = self.bundle.users.index.get(user_id, 0)
        if self.online is not None:
            features = self.online.user(user_id)
            if features is None:
                return user_index, np.zeros(0, dtype=np.int64), [], [], {}
            encoded = self.bundle.items.encode(features.history)
            keep = encoded > 0
            types = [t for t, k in zip(features.history_event_types, keep) if k]
            times = [t for t, k in zip(features.history_ts, keep) if k]
            return user_index, encoded[keep], types, times, features.attributes
        row = self.bundle.histories[user_index] if user_index else np.zeros(0, dtype=np.int64)
        history = row[row > 0]
        return user_index, history, [], [], {}

    def _retrieve_and_score(self, user_index: int, history: np.ndarray) -> tuple[Candidates, Any]:
        padded = np.zeros((1, self.max_history), dtype=np.int64)
        tail = history[-self.max_history:]
        if tail.size:
            padded[0, -tail.size:] = tail
        with self._lock, torch.no_grad():
            encoded = self.model.encode_users(torch.tensor([user_index], device=self.device),
                                              torch.as_tensor(padded, device=self.device))
            vector = encoded.vector[0].cpu().numpy()
            retrieval = self.item_matrix @ vector
            retrieval[0] = -np.inf
            n = min(self.num_candidates, retrieval.shape[0] - 1)
            top = np.argpartition(-retrieval, n - 1)[:n] if n < retrieval.shape[0] - 1 else np.arange(1, retrieval.shape[0])
            top = top[top > 0]
            items_t = self.item_matrix_t[torch.as_tensor(top, device=self.device)].unsqueeze(0)
            scores = self.model.interactor.score(encoded, items_t)[0].float().cpu().numpy()
            weights = self.model.interactor.explain(encoded, items_t)
        reasons = self._reasons(top, history, padded, weights)
        order = np.argsort(-scores, kind="stable")
        return Candidates(top[order].astype(np.int64), scores[order].astype(np.float32), [reasons[i] for i in order]), encoded

    def _reasons(self, items: np.ndarray, history: np.ndarray, padded: np.ndarray, weights: Any) -> list[list[str]]:
        if history.size == 0:
            return [[] for _ in items]
        if weights is not None:  # attention: the history item the candidate attended to most
            attended = weights[0].float().cpu().numpy()  # [K, L]
            best = attended.argmax(axis=1)
            return [[f"attention {attended[i, best[i]]:.2f} on {self.catalog.title(int(padded[0, best[i]]))}"]
                    for i in range(items.size)]
        recent = history[-self.max_history:]
        similarity = self.catalog.vectors[items] @ self.catalog.vectors[recent].T  # [K, H]
        best = similarity.argmax(axis=1)
        return [[f"similar to {self.catalog.title(int(recent[b]))}"] for b in best]

    # -- public API --------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 10, *, exclude: list[str] | None = None,
                  filters: dict[str, list[Any]] | None = None, now: datetime | None = None,
                  explain: bool = True) -> list[Recommendation]:
        """The top ``k`` items for a user; unknown users get popular items with that reason."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        user_index, history, types, times, attributes = self.user_history(user_id)
        known = user_index > 0 or history.size > 0
        if known:
            candidates, _ = self._retrieve_and_score(user_index, history)
        else:
            candidates = Candidates.empty()
        excluded = self.bundle.items.encode(exclude or [])
        context = RankContext(
            user_id=user_id, k=k, catalog=self.catalog, history=history, history_event_types=types,
            history_ts=times, known_user=known, now=now, exclude=excluded[excluded > 0],
            filters=filters or {}, user_attributes=attributes,
        )
        for ranker in self.rankers:
            candidates = ranker.rank(candidates, context)
        candidates = candidates.take(np.arange(min(k, len(candidates))))
        return [
            Recommendation(str(self.catalog.item_ids[i]), float(s), list(r) if explain else [],
                           self.catalog.title(int(i)))
            for i, s, r in zip(candidates.items, candidates.scores, candidates.reasons)
        ]

    def similar(self, item_id: str, k: int = 10) -> list[Recommendation]:
        """Items whose representations are closest (cosine) to ``item_id``'s."""
        index = self.bundle.items.index.get(item_id)
        if index is None:
            raise KeyError(f"unknown item {item_id!r}")
        similarity = self.catalog.vectors @ self.catalog.vectors[index]
        similarity[[0, index]] = -np.inf
        n = min(k, similarity.shape[0] - 2)
        top = np.argpartition(-similarity, n - 1)[:n]
        top = top[np.argsort(-similarity[top], kind="stable")]
        return [Recommendation(str(self.catalog.item_ids[i]), float(similarity[i]),
                               [f"similar to {self.catalog.title(index)}"], self.catalog.title(int(i))) for i in top]
