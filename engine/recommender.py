"""``Recommender``: retrieve → score → rank, with reasons.

1. Retrieve the top-N candidates by inner product of the users' vectors with the item
   matrix: an exact scan, or from 50k items an IVF index calibrated to a recall target
   (``recengine.retrieval``).
   A request with ``filters`` or ``exclude`` retrieves among the items they allow
   (``recengine.allowed_items``), so its list holds k items whenever k items qualify.
2. Score them with the bundle's interactor (the same product for ``dot``; target attention
   over the history for ``attention``).
3. Run the ranker chain (filters, diversity, freshness, fallback, top-k) in config order.
4. Explain the final items only: reasons are built for the k items returned, not for every
   candidate.

Requests are checked one by one before the batch is scored (:meth:`Recommender.check_request`)
and answered one by one (:meth:`Recommender.answer_many`): one bad request in a batch gets
its own error and never changes another request's answer.

Serving builds the Recommender with ``precompute_users=True``: every user's vector is then
encoded once per snapshot (``recengine.user_vectors``) when the interactor scores from the
vector alone, and a request skips the user encoder.

Items that reached the published snapshot after training join the catalogue through the
item tower (``recengine.catalog``): cold items are recommendable from the first request.
Each item carries reasons: the most-attended history item (attention), the most similar
history item (dot), or "popular" (fallback). Unknown users get the fallback, never an error;
new users with attributes get what users like them interact with (the snapshot's segment
popularity, ``OnlineStore.segment_popularity``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl
import torch
from threadpoolctl import ThreadpoolController

from recengine.allowed_items import AllowedItems, search_within
from recengine.bundle import Bundle, load_bundle
from recengine.catalog import AssembledCatalog, assemble_catalog, extend_catalog
from recengine.components import Candidates, Encoded, RankContext, Ranker, SegmentPopularity, l2_normalise
from recengine.config import ComponentRef
from recengine.errors import NotFoundError, RequestError
from recengine.event_times import epoch_seconds
from recengine.feature_store.online import Segment, SegmentItems
from recengine.feature_store.snapshot import default_root
from recengine.live_overlay import LiveOverlay
from recengine.plugin_manager import get_plugin_manager
from recengine.ranking import check_filter
from recengine.retrieval import CALIBRATION_QUERIES, IVF_MIN_ITEMS, RetrievalIndex, build_index, grow_index
from recengine.searches import PooledSearches, countable_searches, pool_queries
from recengine.training_data import pad_histories
from recengine.user_vectors import UserVectors

# users encoded at load with precompute_users (a bound on load time and memory: 500k users
# × 64 floats is 128 MB and ~2 min on one core); users beyond it are encoded per request
MAX_PRECOMPUTED_USERS = 500_000
MAX_LIVE_VECTORS = 100_000  # users with live events whose re-encoded vector is kept


@dataclass
class Recommendation:
    item_id: str
    score: float
    reasons: list[str] = field(default_factory=list)
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "reasons": self.reasons, "title": self.title}


class Recommendations(list):
    """A request's ranked :class:`Recommendation` list; ``fallback`` is True when the model
    did not know the user (no id, no history) and fallback rankers answered alone; ``notes``
    say what the request asked for that did not apply."""

    def __init__(self, items: list[Recommendation], fallback: bool = False, notes: list[str] | None = None) -> None:
        super().__init__(items)
        self.fallback = fallback
        self.notes = notes or []


MAX_EMBEDDED_QUERIES = 50_000  # query texts embedded while serving, kept for their next request
SEARCH_REASON_COSINE = 0.5  # an item is explained by a search whose query vector is at least this close to its text
TIME_NOT_USED = "context.time was not used: no ranker of this domain reads the request's time"
NO_EVENT_TIMES = ("this model's user encoder reads event times (hstu time_bias) and this history has none: "
                  "a history given in the request carries no times; the stored one needs a snapshot "
                  "(or a bundle trained with event times)")

EventTimes = tuple[list[np.ndarray], np.ndarray]  # per-user history epoch seconds, query time per user


@dataclass
class Scored:
    """One known user's model candidates, best first, and what explains them."""

    candidates: Candidates
    weights: np.ndarray | None  # [n, L] attention over ``padded`` (attention interactors)
    padded: np.ndarray  # [L] the history the model saw (0 = padding)


@dataclass(frozen=True)
class UserHistory:
    """What serving knows of one user.

    ``index`` is the model's dense user index (0: the model never saw the user); ``items``
    the history as dense item indices, oldest first (items the catalogue lacks dropped).
    Event types, times and attributes come from the snapshot (empty without one).
    """

    index: int
    items: np.ndarray
    event_types: list[str] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        """Whether the model can score the user (an id it trained on, or a history)."""
        return self.index > 0 or self.items.size > 0


@dataclass(frozen=True)
class PastEvent:
    """One event of a user's history as serving sees it (``Recommender.recent_events``)."""

    item_id: str
    title: str | None  # None: the catalogue has no title for it (or lacks the item)
    event_type: str | None  # None: only the item is known (a bundle served without a snapshot)
    ts: datetime | None  # UTC, as the store keeps it; None where unknown


@dataclass
class Request:
    """One recommendation request (what the HTTP API and the CLI both build)."""

    user_id: str
    k: int = 10
    exclude: list[str] = field(default_factory=list)
    filters: dict[str, list[Any]] = field(default_factory=dict)
    now: datetime | None = None
    explain: bool = True
    # the visitor's history (item ids, oldest first) instead of the stored one: anonymous and
    # session visitors, or an override; ``history_event_types`` aligned with it when given
    history: list[str] | None = None
    history_event_types: list[str] | None = None


def build_rankers(refs: list[ComponentRef]) -> list[Ranker]:
    """The ranker chain, in config order."""
    manager = get_plugin_manager()
    return [manager.build("rankers", ref, where=f"ranking.rankers[{i}]") for i, ref in enumerate(refs)]


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
    root = default_root(store)
    return root if (root / "CURRENT").exists() else None


class Recommender:
    """Recommendations from a model bundle, with live histories and cold items from a snapshot."""

    def __init__(self, bundle: Bundle, online: Any | None = None, rankers: list[ComponentRef] | None = None,
                 candidates: int | None = None, threads: int | None = 1, precompute_users: bool = False,
                 retrieval: str | None = None) -> None:
        """``threads`` caps torch's and BLAS's thread pools while a request runs (``None``:
        leave them as the process has them). One request's tensors are tiny, so extra threads
        only add hand-offs; and two pools of spinning threads (torch's OpenMP, numpy's
        OpenBLAS) fighting over 2 busy cores made requests 30x slower (p50 ~14 ms → ~450 ms
        at 100k items). Scale with processes or replicas, not intra-op threads.

        ``precompute_users`` encodes every user once now (serving: seconds at load, the
        user encoder off every request); ``retrieval`` overrides the bundle's
        ``ranking.retrieval`` (auto, exact, ivf)."""
        self.bundle = bundle
        self.threads = threads
        self.online = online
        self.model = bundle.model.eval()
        self.device = self.model.device
        self._lock = threading.Lock()  # one torch forward at a time per process
        self.max_history = bundle.config.model.max_history
        items = assemble_catalog(bundle, online)
        self.item_ids, self.item_matrix, self.item_index = items.item_ids, items.item_matrix, items.item_index
        self.catalog, self.cold_items = items.catalog, items.cold_items
        self.allowed_items = AllowedItems(self.catalog)
        if threads is not None:
            thread_pools()  # find the pools now, not during the first request
        self.rankers = build_rankers(rankers if rankers is not None else bundle.config.ranking.rankers)
        # a user encoder reading event times encodes the history against the request's time
        self.reads_event_times = bool(self.model.reads_event_times)
        # a user tower reading recent searches pools those before the request's time (model.searches)
        self.reads_searches = bool(self.model.reads_searches)
        self._bundle_query_vectors: dict[str, np.ndarray] | None = None
        self._embedded_queries: OrderedDict[str, np.ndarray] = OrderedDict()  # queries embedded while serving
        # items in the searches' text space by dense index ([N+1, d], with spare rows for posted items)
        self._search_item_vectors: np.ndarray | None = None
        # whether the request's time can change an answer (else a response notes it was unused)
        self.reads_request_time = (self.reads_event_times or self.reads_searches
                                   or any(ranker.reads_request_time for ranker in self.rankers))
        self.num_candidates = candidates or bundle.config.ranking.candidates
        self._segments: dict[Segment, SegmentPopularity] = {}
        self.user_vectors: UserVectors | None = None
        self.live: LiveOverlay | None = None  # live events and users after the snapshot (serving)
        # users re-encoded for their live events: (overlay version, vector), newest last
        self._live_vectors: OrderedDict[str, tuple[int, np.ndarray]] = OrderedDict()
        with self._thread_limit():
            # a time-reading (or search-reading) encoder's vector changes with the request's time: never cached
            if (precompute_users and not self.model.interactor.uses_sequence and not self.reads_event_times
                    and not self.reads_searches):
                self.user_vectors = self._encode_all_users()
            self.index = self._build_index(retrieval or bundle.config.ranking.retrieval)

    # -- user vectors and the retrieval index ------------------------------------------
    def _user_ids(self) -> list[str]:
        """Every user the model can score: users with a snapshot history first, then the
        ids it trained on (duplicates are dropped by the caller)."""
        ids = self.online.data.histories["user_id"].to_list() if self.online is not None else []
        return ids + list(self.bundle.users.ids)

    def _encode_vectors(self, users: list[int], histories: list[np.ndarray],
                        times: EventTimes | None = None, searches: np.ndarray | None = None) -> np.ndarray:
        with torch.no_grad():
            return self._encode(users, self._pad(histories), times, searches).vector.float().cpu().numpy()

    def _encode_all_users(self) -> UserVectors:
        """Up to MAX_PRECOMPUTED_USERS users (~0.25 ms each on one core); the rest are encoded
        when they ask."""
        return UserVectors.build(self._user_ids(), self._encoder_input, self._encode_vectors,
                                 limit=MAX_PRECOMPUTED_USERS)

    def _encoder_input(self, user_id: str) -> tuple[int, np.ndarray]:
        """A user's dense index and history items: what the user encoder reads."""
        history = self.user_history(user_id)
        return history.index, history.items

    def _build_index(self, kind: str) -> RetrievalIndex:
        items = self.item_matrix.shape[0] - 1
        queries = None
        if kind == "ivf" or (kind == "auto" and items >= IVF_MIN_ITEMS):
            queries = self._calibration_queries()
        return build_index(kind, self.item_matrix, queries, self.num_candidates,
                           self.bundle.config.ranking.retrieval_recall)

    def _calibration_queries(self) -> np.ndarray:
        """Vectors of up to 256 real users: the queries the index will answer."""
        if self.user_vectors is not None:
            return self.user_vectors.sample(CALIBRATION_QUERIES)
        ids = self._user_ids()
        rng = np.random.default_rng(0)
        chosen = [ids[i] for i in rng.permutation(len(ids))[:CALIBRATION_QUERIES * 2]]
        pairs = [(user_id, h) for user_id, h in zip(chosen, map(self.user_history, chosen))
                 if h.known and (not self.reads_event_times or self._has_times(h))][:CALIBRATION_QUERIES]
        looked_up = [h for _, h in pairs]
        if not looked_up:
            return np.zeros((0, self.item_matrix.shape[1]), dtype=np.float32)
        times = self._event_times(looked_up, [None] * len(looked_up)) if self.reads_event_times else None
        searches = None
        if self.reads_searches:
            now = int(epoch_seconds([datetime.now(UTC)])[0])
            searches = np.stack([self.recent_searches(user_id, h.index, now).vector for user_id, h in pairs])
        return self._encode_vectors([h.index for h in looked_up], [h.items for h in looked_up], times, searches)

    def retrieval_info(self) -> dict[str, Any]:
        """The retrieval index and user-vector cache in use (for ``/model`` and logs)."""
        return {**self.index.describe(), "cached_users": len(self.user_vectors) if self.user_vectors else 0}

    @classmethod
    def load(cls, name_or_path: str | Path, models: str | Path | None = None, snapshot: str | Path | None = None,
             **kwargs: Any) -> Recommender:
        """Load a bundle; histories and cold items come from ``snapshot`` (default: the
        published snapshot beside the store the bundle trained on, when there is one)."""
        bundle = load_bundle(name_or_path, models)
        root = Path(snapshot) if snapshot else default_snapshot(bundle)
        online = None
        if root is not None:
            from recengine.feature_store import OnlineStore

            online = OnlineStore(root)
        return cls(bundle, online, **kwargs)

    # -- request pieces ----------------------------------------------------------------
    def user_history(self, user_id: str) -> UserHistory:
        """The user's dense index and history: live from the snapshot when there is one,
        else what the bundle trained on."""
        user_index = self.bundle.users.index.get(user_id, 0)
        live = self.live.events(user_id) if self.live is not None else None
        attributes = self.live.attributes(user_id) if self.live is not None else None
        if self.online is None and live is None and attributes is None:
            row = self.bundle.histories[user_index] if user_index else np.zeros(0, dtype=np.int64)
            stamps = self.bundle.history_times
            if stamps is None or not user_index:  # times are kept for time-reading encoders only
                return UserHistory(user_index, row[row > 0])
            at = stamps[user_index][row > 0].astype("datetime64[s]").astype("datetime64[us]").tolist()
            return UserHistory(user_index, row[row > 0], times=at)
        features = self.online.user(user_id) if self.online is not None else None
        items = features.history if features is not None else []
        types = features.history_event_types if features is not None else []
        times = features.history_ts if features is not None else []
        if live is not None:  # the live events follow the snapshot's (they are newer)
            items, types, times = items + live.items, types + live.event_types, times + live.times
        merged = {**(features.attributes if features is not None else {}), **(attributes or {})}
        return self._history(user_index, items, types, times, merged)

    def _history(self, user_index: int, items: list[str], types: list[str], times: list[datetime],
                 attributes: dict[str, Any]) -> UserHistory:
        """A history of item ids as dense indices; items the catalogue lacks are dropped."""
        encoded = np.array([self.item_index.get(i, 0) for i in items], dtype=np.int64)
        keep = encoded > 0
        kept_types = [t for t, k in zip(types, keep) if k] if types else []
        kept_times = [t for t, k in zip(times, keep) if k] if times else []
        return UserHistory(user_index, encoded[keep], kept_types, kept_times, attributes)

    def given_history(self, request: Request) -> tuple[UserHistory, list[str]]:
        """The history a request carries (``Request.history``) and the ids the catalogue
        does not know (ignored; the response says so). The stored attributes still apply."""
        assert request.history is not None
        stored = self.user_history(request.user_id)
        types = request.history_event_types or []
        unknown = [item for item in request.history if item not in self.item_index]
        history = self._history(self.bundle.users.index.get(request.user_id, 0), request.history, types, [],
                                stored.attributes)
        return history, unknown

    def _seen(self, user_id: str, event_types: list[str] | None) -> np.ndarray:
        assert self.online is not None  # RankContext.seen is set only with a snapshot
        seen = self.online.seen(user_id, event_types)
        if self.live is not None:
            seen = seen + self.live.seen(user_id, event_types)
        indices = np.array([self.item_index.get(i, 0) for i in seen], dtype=np.int64)
        return indices[indices > 0]

    def history_of(self, user_id: str) -> tuple[list[str], list[str]]:
        """Another user's recent item ids and event types (for graph rankers such as
        friends-of-friends); empty without a snapshot."""
        features = self.online.user(user_id) if self.online is not None else None
        items, types = (features.history, features.history_event_types) if features is not None else ([], [])
        live = self.live.events(user_id) if self.live is not None else None
        if live is not None:
            items, types = items + live.items, types + live.event_types
        return items, types

    def recent_events(self, user_id: str, limit: int) -> list[PastEvent] | None:
        """The user's latest ``limit`` events, newest first, as this replica sees them: the
        snapshot's history followed by the live events merged since (without a snapshot, the
        items the bundle trained on). None for a user the model does not know: no trained id,
        no snapshot row, no live event or attribute."""
        live = self.live.events(user_id) if self.live is not None else None
        features = self.online.user(user_id) if self.online is not None else None
        trained = self.bundle.users.index.get(user_id, 0)
        if not trained and features is None and (self.live is None or not self.live.has_user(user_id)):
            return None
        if self.online is None and live is None:
            row = self.bundle.histories[trained] if trained else np.zeros(0, dtype=np.int64)
            items = [str(self.catalog.item_ids[i]) for i in row[row > 0].tolist()]  # dense = catalogue order
            types: list[str | None] = [None] * len(items)
            times: list[datetime | None] = [None] * len(items)
        else:
            items = (features.history if features is not None else []) + (live.items if live else [])
            types = [*(features.history_event_types if features is not None else []),
                     *(live.event_types if live else [])]
            times = [*(features.history_ts if features is not None else []), *(live.times if live else [])]
        newest = list(zip(items, types, times))[::-1][:limit]
        return [PastEvent(item, self._title_of(item), kind, when) for item, kind, when in newest]

    def _title_of(self, item_id: str) -> str | None:
        index = self.item_index.get(item_id)
        titles = self.catalog.titles
        if index is None or titles is None or not titles[index]:
            return None
        return str(titles[index])

    def segment_popularity(self, attributes: dict[str, Any]) -> SegmentPopularity | None:
        """Popularity among users sharing a new user's attributes, in dense indices (cached
        per segment); None without a snapshot or without a segment
        (``OnlineStore.user_segment`` says how a segment is chosen)."""
        if self.online is None or not attributes:
            return None
        segment = self.online.user_segment(attributes)
        if segment is None:
            return None
        if segment not in self._segments:
            self._segments[segment] = self._dense_popularity(self.online.segment_popularity(segment))
        return self._segments[segment]

    def _dense_popularity(self, found: SegmentItems) -> SegmentPopularity:
        """A segment's item counts over the catalogue's dense indices, and the item order
        by count (ties: lower index first); items the catalogue lacks are left out."""
        counts = np.zeros(len(self.item_ids) + 1, dtype=np.float64)
        indices = np.fromiter((self.item_index.get(i, 0) for i in found.item_ids), dtype=np.int64,
                              count=len(found.item_ids))
        counts[indices[indices > 0]] = found.counts[indices > 0]
        order = np.argsort(-counts[1:], kind="stable").astype(np.int64) + 1
        return SegmentPopularity(counts, order, found.segment.description)

    def _pad(self, histories: list[np.ndarray]) -> np.ndarray:
        """Histories as the model's [B, L] input: the last L items, right-aligned, 0-padded."""
        padded = np.zeros((len(histories), self.max_history), dtype=np.int64)
        for row, history in enumerate(histories):
            tail = history[-self.max_history:]
            # items beyond the model's id range (cold items) have no learned embedding
            tail = np.where(tail <= len(self.bundle.items), tail, 0)
            if tail.size:
                padded[row, -tail.size:] = tail
        return padded

    @staticmethod
    def _has_times(user: UserHistory) -> bool:
        """Whether every history item has its event time (what a time-reading encoder needs)."""
        return len(user.times) == user.items.size

    def _event_times(self, users: list[UserHistory], nows: list[datetime | None]) -> EventTimes:
        """Each history's epoch seconds and each request's time (``now`` when not given)."""
        current = datetime.now(UTC)
        query = epoch_seconds([now if now is not None else current for now in nows])
        return [epoch_seconds(user.times) for user in users], query

    def _encode(self, users: list[int], padded: np.ndarray, times: EventTimes | None = None,
                searches: np.ndarray | None = None) -> Encoded:
        """The user encoder over ``padded``; ``times`` (aligned with the unpadded histories) for a
        time-reading encoder, right-aligned like the items; ``searches`` [B, d], the pooled recent
        searches, for a search-reading one."""
        time_tensors = None
        if times is not None:
            history_times, query_times = times
            time_tensors = (torch.as_tensor(pad_histories(history_times, self.max_history), device=self.device),
                            torch.as_tensor(query_times, device=self.device))
        search_tensor = None if searches is None else torch.as_tensor(searches, device=self.device)
        return self.model.encode_users(torch.as_tensor(users, device=self.device),
                                       torch.as_tensor(padded, device=self.device), time_tensors, search_tensor)

    def _encode_batch(self, user_ids: list[str | None], users: list[int], padded: np.ndarray,
                      times: EventTimes | None = None, searches: np.ndarray | None = None) -> Encoded:
        """The users' encodings: cached vectors where there are, the user encoder otherwise
        (``None`` ids, and users with live events since the snapshot, are always encoded).
        With ``times`` or ``searches`` (never cached) always the encoder."""
        if self.user_vectors is None or times is not None or searches is not None:
            return self._encode(users, padded, times, searches)
        live = self.live
        versions = [0 if u is None or live is None else live.version(u) for u in user_ids]
        cached = [None if u is None else self._fresh_vector(u, v) if v else self.user_vectors.get(u)
                  for u, v in zip(user_ids, versions)]
        missing = [row for row, vector in enumerate(cached) if vector is None]
        if missing:
            fresh = self._encode([users[r] for r in missing], padded[missing]).vector.float().cpu().numpy()
            for row, vector in zip(missing, fresh):
                cached[row] = vector
                user_id = user_ids[row]
                if user_id is not None and versions[row]:  # encoded for its live history: kept until the next event
                    self._live_vectors[user_id] = (versions[row], vector)
                    self._live_vectors.move_to_end(user_id)
            while len(self._live_vectors) > MAX_LIVE_VECTORS:
                self._live_vectors.popitem(last=False)
        filled = cast(list[np.ndarray], cached)  # every None was replaced above
        return Encoded(vector=torch.from_numpy(np.stack(filled)).to(self.device))

    def _fresh_vector(self, user_id: str, version: int) -> np.ndarray | None:
        """The user's vector encoded with its live events up to ``version``, if still current."""
        found = self._live_vectors.get(user_id)
        return found[1] if found is not None and found[0] == version else None

    def _retrieve(self, vectors: np.ndarray, allowed: list[np.ndarray | None], excluded: list[np.ndarray],
                  n: int) -> np.ndarray:
        """[B, n] candidates: the index's top-n for requests without filters (over-fetched by
        their ``exclude`` count, so excluding items keeps the fast index and still leaves n),
        the top-n among the allowed items for filtered ones (rows padded with item 0 when fewer
        are allowed)."""
        top = np.zeros((vectors.shape[0], n), dtype=np.int64)
        free = [row for row, items in enumerate(allowed) if items is None]
        if free:
            items = self.item_matrix.shape[0] - 1
            wanted = min(n + max(excluded[row].size for row in free), items)
            found = self.index.search(vectors[free], wanted)
            for row, candidates in zip(free, found):
                kept = candidates[~np.isin(candidates, excluded[row])] if excluded[row].size else candidates
                if kept.size > n:  # the n best of what is left (the index returns no order)
                    kept = kept[np.argpartition(self.item_matrix[kept] @ vectors[row], -n)[-n:]]
                top[row, :kept.size] = kept
        for row, items in enumerate(allowed):
            if items is not None:
                found = search_within(self.item_matrix, vectors[row], items, n)
                top[row, :found.size] = found
        return top

    def _score_batch(self, user_ids: list[str | None], users: list[int], histories: list[np.ndarray],
                     allowed: list[np.ndarray | None], excluded: list[np.ndarray],
                     times: EventTimes | None = None, searches: np.ndarray | None = None) -> list[Scored]:
        """Encode users together, retrieve each one's top-N (among its allowed items), score
        them with the interactor (``times``: for a time-reading user encoder; ``searches``: the
        pooled recent searches, for a search-reading one)."""
        padded = self._pad(histories)
        n = min(self.num_candidates, self.item_matrix.shape[0] - 1)
        with self._lock, torch.no_grad():
            encoded = self._encode_batch(user_ids, users, padded, times, searches)
            top = self._retrieve(encoded.vector.float().cpu().numpy(), allowed, excluded, n)
            items_t = torch.from_numpy(self.item_matrix[top]).to(self.device)  # numpy's gather is ~5x cheaper
            scores = self.model.interactor.score(encoded, items_t).float().cpu().numpy()
            weights = self.model.interactor.explain(encoded, items_t)
            weights = None if weights is None else weights.float().cpu().numpy()
        results = []
        for row in range(len(users)):
            order = np.argsort(-scores[row], kind="stable")
            order = order[top[row][order] > 0]  # padding of rows with fewer allowed items
            candidates = Candidates(top[row][order].astype(np.int64), scores[row][order].astype(np.float32),
                                    [[] for _ in range(order.size)])
            results.append(Scored(candidates, None if weights is None else weights[row][order], padded[row]))
        return results

    def _model_reasons(self, items: np.ndarray, scored: Scored, history: np.ndarray) -> list[list[str]]:
        """Why the model proposed each of ``items``: the most-attended history item
        (attention) or the most similar one (dot); nothing for items it did not propose."""
        position = {item: row for row, item in enumerate(scored.candidates.items.tolist())}
        rows = [position.get(item) for item in items.tolist()]
        if history.size == 0 or all(row is None for row in rows):
            return [[] for _ in rows]
        if scored.weights is not None:  # attention: the history item the candidate attended to most
            reasons: list[list[str]] = []
            for row in rows:
                if row is None:
                    reasons.append([])
                    continue
                best = int(scored.weights[row].argmax())
                reasons.append([f"attention {scored.weights[row, best]:.2f} on "
                                f"{self.catalog.title(int(scored.padded[best]))}"])
            return reasons
        recent = history[-self.max_history:]
        similarity = self.catalog.vectors[items] @ self.catalog.vectors[recent].T  # [K, H]
        again = items[:, None] == recent[None, :]
        similarity[again] = -np.inf  # an item is not "similar to" itself
        best = similarity.argmax(axis=1)
        seen = again.any(axis=1).tolist()
        similar = np.isfinite(similarity[np.arange(items.size), best]).tolist()
        return [[] if row is None else
                (["in your history"] if s else []) + ([f"similar to {self.catalog.title(int(recent[b]))}"] if f else [])
                for row, s, f, b in zip(rows, seen, similar, best.tolist())]

    # -- recent searches (model.searches) ------------------------------------------------
    def recent_searches(self, user_id: str, user_index: int, at: int) -> PooledSearches:
        """What the user tower pools for ``user_id`` at epoch seconds ``at``: the snapshot's
        recent searches and those posted since (the bundle's training searches without either)."""
        settings = self.bundle.config.model.searches
        assert settings is not None and self.model.search_log is not None
        log = self.model.search_log
        if self.online is not None or self.live is not None:
            queries, stamps = self.online.searches(user_id) if self.online is not None else ([], [])
            if self.live is not None:  # searches posted since the snapshot follow its own
                posted, posted_at = self.live.searches(user_id)
                queries, stamps = queries + posted, stamps + posted_at
            times = epoch_seconds(stamps) if stamps else np.zeros(0, dtype=np.int64)
        else:
            queries, times = log.of_user(user_index) if user_index else ([], np.zeros(0, dtype=np.int64))
        window = countable_searches(queries, times, at, log.last, log.max_age_seconds)  # only these are looked up
        return pool_queries(window, self._query_vectors(window), log.dim)

    def _query_vectors(self, queries: list[str]) -> dict[str, np.ndarray]:
        """Vectors of ``queries``: the snapshot's, the bundle's, or embedded now by the text model
        that built the set (a query typed after the last ``vectors build``); a query that cannot be
        embedded (the set's vectors came from elsewhere) is left out."""
        settings = self.bundle.config.model.searches
        log = self.model.search_log
        assert settings is not None and log is not None
        if self._bundle_query_vectors is None:
            self._bundle_query_vectors = log.vector_lookup()
        stored = self.online.query_vectors(settings.vectors) if self.online is not None else {}
        found: dict[str, np.ndarray] = {}
        missing = []
        for query in dict.fromkeys(queries):
            vector = stored.get(query)
            if vector is None:
                vector = self._bundle_query_vectors.get(query, self._embedded_queries.get(query))
            if vector is None:
                missing.append(query)
            else:
                found[query] = vector
        if missing and log.encoder is not None:
            found.update(self._embed_queries(missing, log.encoder, log.transform))
        return found

    def _embed_queries(self, queries: list[str], encoder: str, transform: Any) -> dict[str, np.ndarray]:
        """Embed new query texts as ``vectors build`` would (the encoder, then the set's transform),
        remembering the newest MAX_EMBEDDED_QUERIES."""
        with self._lock:  # one torch forward at a time per process; the cache changes under it alone
            embedded = get_plugin_manager().get("encoders", encoder).embed_texts(queries)
            if transform is not None:
                embedded = transform.apply(embedded)
            vectors = dict(zip(queries, np.asarray(embedded, dtype=np.float32)))
            for query, vector in vectors.items():
                self._embedded_queries[query] = vector
                self._embedded_queries.move_to_end(query)
            while len(self._embedded_queries) > MAX_EMBEDDED_QUERIES:
                self._embedded_queries.popitem(last=False)
        return vectors

    def _search_reasons(self, items: np.ndarray, searched: PooledSearches) -> list[list[str]]:
        """``because you searched for "…"`` for each item whose text is close to a counted query
        (cosine >= SEARCH_REASON_COSINE in the vector set the queries were embedded in)."""
        matrix = self._search_space_items()
        if matrix is None:
            return [[] for _ in items.tolist()]
        rows = matrix[np.clip(items, 0, matrix.shape[0] - 1)]
        queries = searched.vectors / np.maximum(np.linalg.norm(searched.vectors, axis=1, keepdims=True), 1e-12)
        similarity = rows @ queries.T  # [K, Q]
        best = similarity.argmax(axis=1)
        return [[f"because you searched for \"{searched.queries[b]}\""]
                if similarity[row, b] >= SEARCH_REASON_COSINE else []
                for row, b in enumerate(best.tolist())]

    def _search_space_items(self) -> np.ndarray | None:
        """The catalogue's items in the searches' vector set, L2-normalised, by dense index
        (zeros for items without a vector); None when neither the snapshot nor the bundle has it."""
        rows = self.catalog.size + 1
        cached = self._search_item_vectors
        if cached is not None and cached.shape[0] >= rows:
            return cached[:rows]
        if cached is not None:  # items posted since: no vector in the set until the next publish, so zeros
            grown = np.zeros((max(rows, 2 * cached.shape[0]), cached.shape[1]), dtype=np.float32)
            grown[:cached.shape[0]] = cached  # room to spare: posts in a row copy the matrix once, not each time
            self._search_item_vectors = grown
            return grown[:rows]
        settings = self.bundle.config.model.searches
        assert settings is not None
        ids: list[str] | None = None
        found: np.ndarray | None = None
        if self.online is not None and settings.vectors in self.online.data.vectors:
            stored = self.online.item_vectors(settings.vectors)
            ids, found = stored.ids, stored.matrix
        elif settings.vectors in self.bundle.item_table.vectors:
            found = self.bundle.item_table.vectors[settings.vectors][1:]
            ids = list(self.bundle.items.ids)
        if ids is None or found is None or not len(ids):
            return None
        matrix = np.zeros((self.catalog.size + 1, found.shape[1]), dtype=np.float32)
        positions = np.array([self.item_index.get(i, 0) for i in ids], dtype=np.int64)
        matrix[positions[positions > 0]] = found[positions > 0]
        self._search_item_vectors = l2_normalise(matrix)
        return self._search_item_vectors

    def add_items(self, rows: pl.DataFrame) -> int:
        """Merge posted item rows into the catalogue (new items appended, encoded by the item
        tower from their attributes; known ones updated); returns how many are new. Each
        structure is swapped as one reference, in an order that keeps every mix a request in
        flight can see consistent (indices only grow; see below). One caller at a time (the
        replica's follower thread)."""
        current = AssembledCatalog(self.item_ids, self.item_matrix, self.item_index, self.catalog, self.cold_items)
        with self._thread_limit():
            grown = extend_catalog(current, self.bundle, self.online, rows)
        added = len(grown.item_ids) - len(self.item_ids)
        # readers combine: matrix ⊇ catalogue (allowed items, reasons) ⊇ item_index, index
        self.item_matrix = grown.item_matrix
        self.catalog, self.allowed_items, self._segments = grown.catalog, AllowedItems(grown.catalog), {}
        self.item_ids, self.item_index, self.cold_items = grown.item_ids, grown.item_index, grown.cold_items
        self.index = grow_index(self.index, grown.item_matrix)
        return added

    # -- public API --------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 10, *, exclude: list[str] | None = None,
                  filters: dict[str, list[Any]] | None = None, now: datetime | None = None,
                  explain: bool = True) -> Recommendations:
        """The top ``k`` items for a user; unknown users get popular items with that reason."""
        request = Request(user_id, k, list(exclude or []), dict(filters or {}), now, explain)
        return self.recommend_many([request])[0]

    def recommend_many(self, requests: list[Request]) -> list[Recommendations]:
        """Several requests with one batched encode and retrieval; raises the first request's
        error, if any (:meth:`answer_many` answers each request on its own)."""
        answers = self.answer_many(requests)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return cast(list[Recommendations], answers)

    def answer_many(self, requests: list[Request]) -> list[Recommendations | Exception]:
        """Each request's recommendations, or the exception that request raised, in request
        order: what serving batches. A bad request (a ``RequestError``) or a ranker failing on
        one request fails that request alone."""
        with self._thread_limit():
            return self._answer_many(requests)

    def check_request(self, request: Request) -> None:
        """Raise :class:`~recengine.errors.RequestError` when ``request`` cannot be answered
        as asked: ``k < 1``, or a filter on an unknown column or with values the column
        cannot hold (``recengine.ranking.check_filter``)."""
        if request.k < 1:
            raise RequestError(f"k must be at least 1, got {request.k}")
        for column, allowed in request.filters.items():
            check_filter(self.catalog, column, allowed)

    def _thread_limit(self) -> AbstractContextManager[Any]:
        return nullcontext() if self.threads is None else thread_pools().limit(limits=self.threads)

    def _answer_many(self, requests: list[Request]) -> list[Recommendations | Exception]:
        answers: list[Recommendations | Exception | None] = [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                self.check_request(request)
            except RequestError as exc:
                answers[i] = exc
        valid = [i for i, answer in enumerate(answers) if answer is None]
        looked_up: dict[int, UserHistory] = {}
        unknown_history: dict[int, list[str]] = {}
        for i in valid:
            if requests[i].history is None:
                looked_up[i] = self.user_history(requests[i].user_id)
            else:
                looked_up[i], unknown_history[i] = self.given_history(requests[i])
        excluded = {i: self._excluded(requests[i]) for i in valid}
        searched: dict[int, PooledSearches] = {}
        if self.reads_searches:
            current = datetime.now(UTC)
            searched = {i: self.recent_searches(requests[i].user_id, looked_up[i].index,
                                                int(epoch_seconds([requests[i].now or current])[0]))
                        for i in valid}
        known = [i for i in valid if self._scorable(looked_up[i]) or (i in searched and searched[i].queries)]
        times = None
        if self.reads_event_times:
            for i in known:
                if not self._has_times(looked_up[i]):
                    answers[i] = RequestError(NO_EVENT_TIMES)
            valid = [i for i in valid if answers[i] is None]
            known = [i for i in known if answers[i] is None]
            times = self._event_times([looked_up[i] for i in known], [requests[i].now for i in known])
        scored = dict(zip(known, self._score_batch(
            [None if requests[i].history is not None else requests[i].user_id for i in known],
            [looked_up[i].index for i in known],
            [looked_up[i].items for i in known],
            [self.allowed_items.of(requests[i].filters, excluded[i]) if requests[i].filters else None
             for i in known],
            [excluded[i] for i in known], times,
            np.stack([searched[i].vector for i in known]) if self.reads_searches else None))) if known else {}
        for i in valid:  # a history of items posted after training: what is like them
            if i not in scored and looked_up[i].items.size:
                scored[i] = self._score_by_content(looked_up[i].items, requests[i], excluded[i])
        for i in valid:
            try:
                answers[i] = self._rank(requests[i], looked_up[i], scored.get(i), excluded[i],
                                        unknown_history.get(i, []), searched.get(i))
            except Exception as exc:  # this request's failure (a bug too), reported to it alone
                answers[i] = exc
        return cast(list[Recommendations | Exception], answers)

    def _score_by_content(self, history: np.ndarray, request: Request, excluded: np.ndarray) -> Scored:
        """Candidates for a history the model cannot read (only items posted after training):
        the items closest to its mean representation (the catalogue's item vectors, which the
        item tower made for the posted items too), its own items and exclusions left out."""
        vectors = self.catalog.vectors
        recent = history[-self.max_history:]
        similarity = vectors @ vectors[recent].mean(axis=0)
        similarity[0] = -np.inf
        similarity[recent] = -np.inf
        similarity[excluded] = -np.inf
        allowed = self.allowed_items.of(request.filters, excluded) if request.filters else None
        if allowed is not None:
            blocked = np.ones(similarity.shape[0], dtype=bool)
            blocked[allowed] = False
            similarity[blocked] = -np.inf
        finite = int(np.isfinite(similarity).sum())
        n = min(self.num_candidates, finite)
        top = np.argpartition(-similarity, n - 1)[:n] if n else np.zeros(0, dtype=np.int64)
        top = top[np.argsort(-similarity[top], kind="stable")]
        candidates = Candidates(top.astype(np.int64), similarity[top].astype(np.float32), [[] for _ in range(n)])
        return Scored(candidates, None, np.zeros(self.max_history, dtype=np.int64))

    def _scorable(self, user: UserHistory) -> bool:
        """Whether the model has something to go on: an id it trained, or a history item with a
        learned embedding (items posted after training have none: such a history is answered
        by content, :meth:`_score_by_content`, not with scores of 0 in arbitrary order)."""
        trained = len(self.bundle.items)
        return user.index > 0 or bool((user.items <= trained).any())

    def _seen_of(self, request: Request) -> Callable[[list[str] | None], np.ndarray] | None:
        """What exclude-seen rankers hide: the stored and live items of the user, or the
        items of the history the request carries."""
        if request.history is not None:
            given = request.history
            types = request.history_event_types

            def seen_in_request(event_types: list[str] | None) -> np.ndarray:
                kept = given if event_types is None or types is None else \
                    [item for item, kind in zip(given, types) if kind in event_types]
                indices = np.array([self.item_index.get(i, 0) for i in kept], dtype=np.int64)
                return indices[indices > 0]
            return seen_in_request
        if self.online is None and self.live is None:
            return self._seen_in_bundle(request.user_id)
        if self.online is None:
            return None
        return lambda event_types: self._seen(request.user_id, event_types)

    def _seen_in_bundle(self, user_id: str) -> Callable[[list[str] | None], np.ndarray]:
        """Without a snapshot only the bundle's training histories are known, and they keep no
        event types: every item of the user's history is excluded whatever types a ranker asks
        for (a purchase is never shown again, at the cost of also hiding viewed items)."""
        index = self.bundle.users.index.get(user_id, 0)
        row = self.bundle.histories[index] if index else np.zeros(0, dtype=np.int64)
        seen = row[row > 0].astype(np.int64)
        return lambda event_types: seen

    def _excluded(self, request: Request) -> np.ndarray:
        """The request's ``exclude`` ids the catalogue knows, as dense indices."""
        excluded = np.array([self.item_index.get(i, 0) for i in request.exclude], dtype=np.int64)
        return excluded[excluded > 0]

    def _rank(self, request: Request, user: UserHistory, scored: Scored | None,
              excluded: np.ndarray, unknown_history: list[str],
              searched: PooledSearches | None = None) -> Recommendations:
        history = user.items
        known = scored is not None
        candidates = scored.candidates if scored is not None else Candidates.empty()
        context = RankContext(
            user_id=request.user_id, k=request.k, catalog=self.catalog, history=history,
            history_event_types=user.event_types, history_ts=user.times, known_user=known, now=request.now,
            exclude=excluded, filters=request.filters, user_attributes=user.attributes,
            item_index=self.item_index, history_of=self.history_of,
            segment_popularity=lambda: self.segment_popularity(user.attributes),
            seen=self._seen_of(request), recent_searches=[] if searched is None else list(searched.queries),
        )
        for ranker in self.rankers:
            candidates = ranker.rank(candidates, context)
        candidates = candidates.head(request.k)
        if not request.explain:
            reasons: list[list[str]] = [[] for _ in range(len(candidates))]
        elif scored is None:  # nothing from the model: the rankers' reasons ("popular") alone
            reasons = [list(r) for r in candidates.reasons]
        else:  # the model's reasons first, then what rankers added ("diversified")
            model = self._model_reasons(candidates.items, scored, history)
            if searched is not None and searched.queries:
                model = [s + m for s, m in zip(self._search_reasons(candidates.items, searched), model)]
            reasons = [m + list(r) for m, r in zip(model, candidates.reasons)]
        notes = [TIME_NOT_USED] if request.now is not None and not self.reads_request_time else []
        if unknown_history:
            shown = ", ".join(repr(i) for i in unknown_history[:5]) + (" ..." if len(unknown_history) > 5 else "")
            notes.append(f"{len(unknown_history)} history item(s) not in the catalogue were ignored: {shown}")
        return Recommendations([
            Recommendation(str(self.catalog.item_ids[i]), float(s), r, self.catalog.title(int(i)))
            for i, s, r in zip(candidates.items.tolist(), candidates.scores.tolist(), reasons)
        ], fallback=not known and len(candidates) > 0, notes=notes)

    def similar(self, item_id: str, k: int = 10) -> list[Recommendation]:
        """Items whose representations are closest (cosine) to ``item_id``'s."""
        index = self.item_index.get(item_id)
        if index is None:
            raise NotFoundError(f"unknown item {item_id!r}")
        with self._thread_limit():
            similarity = self.catalog.vectors @ self.catalog.vectors[index]
        similarity[[0, index]] = -np.inf
        n = max(1, min(k, similarity.shape[0] - 2))
        top = np.argpartition(-similarity, n - 1)[:n]
        top = top[np.argsort(-similarity[top], kind="stable")]
        return [Recommendation(str(self.catalog.item_ids[i]), float(similarity[i]),
                               [f"similar to {self.catalog.title(index)}"], self.catalog.title(int(i)))
                for i in top.tolist()]
