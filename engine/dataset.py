"""Prepare a store's data for a pipeline: split, id maps, feature tables, popularity."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from recengine.config import PipelineConfig
from recengine.data import IdMap, auto_feature_columns, build_feature_table, build_interactions
from recengine.errors import ConfigError, DataError
from recengine.feature_store import FeatureStore
from recengine.searches import SearchLog
from recengine.training_data import PreparedData


def prepare(store: FeatureStore, config: PipelineConfig, event_weights: dict[str, float] | None = None) -> PreparedData:
    """Split the store's events by the configured protocol and encode everything."""
    train = config.train
    split = store.split(train.protocol, seed=train.split_seed, fold=train.fold, folds=train.folds)
    if split.height == 0:
        raise DataError(f"store {store.path} has no events to train on; ingest some first")
    users_frame = store.latest("users")
    items_frame = store.latest("items")
    users = IdMap(sorted(users_frame["user_id"].to_list()))
    items = IdMap(sorted(items_frame["item_id"].to_list()))
    weights = merged_event_weights(config, event_weights)
    interactions = build_interactions(split, users, items, train.protocol, weights, train.weight_by_value,
                                      config.model.max_history, with_times=needs_event_times(config))
    if interactions.items.size == 0:
        raise DataError("the split left no training events")
    user_columns = _columns(config.model.user_features, users_frame, "user_id")
    item_columns = _columns(config.model.item_features, items_frame, "item_id")
    vectors = {name: store.read_vectors(name) for name in required_vectors(config)}
    popularity = np.bincount(interactions.items, minlength=len(items) + 1).astype(np.float32)
    return PreparedData(
        users=users, items=items,
        user_features=build_feature_table(users_frame, users, "user_id", user_columns),
        item_features=build_feature_table(items_frame, items, "item_id", item_columns, vectors),
        interactions=interactions, popularity=popularity, item_frame=items_frame,
        searches=load_search_log(store, config, users),
    )


def load_search_log(store: FeatureStore, config: PipelineConfig, users: IdMap) -> SearchLog | None:
    """The store's searches as ``config.model.searches`` reads them (None when it reads none):
    every search of a known user, with its query's vector from the configured set. A searched
    query the set has no vector for yet is embedded here by the set's text model; a set whose
    vectors came from elsewhere (no model to embed with) makes that a ``DataError``."""
    settings = config.model.searches
    if settings is None:
        return None
    queries, matrix = store.read_query_vectors(settings.vectors)
    if not queries and store.sql("SELECT count(*) AS n FROM vector_sets WHERE name = ?",
                                 [settings.vectors])["n"][0] == 0:
        raise ConfigError(f"model.searches.vectors: the store has no vector set {settings.vectors!r}; build it "
                          f"with `recengine vectors build --vector {settings.vectors}` (it embeds the queries too)")
    source = store.vector_sources().get(settings.vectors) or {}
    transform = store.vector_transform(settings.vectors)
    missing = store.unembedded_queries(settings.vectors)
    if missing:  # typed since the last `vectors build` (posted while serving, say): embedded here alike
        if not source.get("encoder"):
            raise DataError(f"{len(missing)} searched quer{'y has' if len(missing) == 1 else 'ies have'} no vector in "
                            f"set {settings.vectors!r} (e.g. {missing[:3]}), whose vectors came from elsewhere: "
                            f"embed the set with `recengine vectors build --vector {settings.vectors}`")
        queries, matrix = _with_embedded(queries, matrix, missing, source["encoder"], transform)
    rows = store.searches()
    dense = users.encode(rows["user_id"])
    known = dense > 0
    position = {query: i for i, query in enumerate(queries)}
    query_index = np.fromiter((position[q] for q in rows["query"].to_list()), dtype=np.int64, count=rows.height)
    times = rows["ts"].dt.epoch("s").to_numpy().astype(np.int64)
    order = np.lexsort((np.arange(rows.height)[known], times[known], dense[known]))  # stable within a second
    age = None if settings.max_age_days is None else int(settings.max_age_days * 86_400)
    return SearchLog(dense[known][order], times[known][order], query_index[known][order], queries,
                     np.asarray(matrix, dtype=np.float32), settings.last, age,
                     encoder=source.get("encoder"), transform=transform)


def _with_embedded(queries: list[str], matrix: np.ndarray, missing: list[str], encoder: str,
                   transform: Any) -> tuple[list[str], np.ndarray]:
    """The stored query vectors plus ``missing`` ones embedded now, as ``vectors build`` would
    (the set's encoder, then its transform); nothing is written (the store may be read-only)."""
    from recengine.plugin_manager import get_plugin_manager

    embedded = get_plugin_manager().get("encoders", encoder).embed_texts(missing)
    if transform is not None:
        embedded = transform.apply(embedded)
    stored = np.asarray(matrix, dtype=np.float32).reshape(len(queries), -1) if queries else \
        np.zeros((0, embedded.shape[1]), dtype=np.float32)
    return queries + missing, np.concatenate([stored, np.asarray(embedded, dtype=np.float32)])


def merged_event_weights(config: PipelineConfig, domain_weights: dict[str, float] | None = None) -> dict[str, float]:
    """Each event type's training weight: the domain's defaults overlaid with ``train.event_weights``
    (training and re-evaluation must weigh events alike)."""
    return {**(domain_weights or {}), **config.train.event_weights}


def _columns(requested: list[str] | str, frame: pl.DataFrame, id_column: str) -> list[str]:
    if requested == "auto":
        return auto_feature_columns(frame, id_column)
    missing = [c for c in requested if c not in frame.columns]
    if missing:
        raise ConfigError(f"feature column(s) {missing} not in the store; available: {frame.columns}")
    return list(requested)


def required_vectors(config: PipelineConfig) -> list[str]:
    """The configured item vector sets plus those the item encoder needs (``text`` for the
    text encoder), so ``--item-encoder text`` works without listing the set twice."""
    from recengine.plugin_manager import get_plugin_manager

    ref = config.model.item_encoder
    encoder = get_plugin_manager().get("encoders", ref.name)
    needed = encoder.required_vectors(ref.params)
    return list(dict.fromkeys([*config.model.item_vectors, *needed]))


def attach_searches(store: FeatureStore, *bundles: Any) -> None:
    """Give each bundle whose model reads searches the store's current search log (by its own
    user ids), so a re-evaluation on the store's data pools the searches the store holds now,
    not only those it trained with."""
    for bundle in bundles:
        if bundle.model.reads_searches:
            bundle.model.search_log = load_search_log(store, bundle.config, bundle.users)


def needs_event_times(config: PipelineConfig) -> bool:
    """Whether training and evaluation sets need the events' times: for a user encoder that
    reads them, and to pool recent searches as of each prediction (``model.searches``)."""
    return reads_event_times(config) or config.model.searches is not None


def reads_event_times(config: PipelineConfig) -> bool:
    """Whether the configured user encoder reads event timestamps (``Encoder.reads_event_times``):
    only then are the events' times gathered for training, evaluation and the bundle."""
    from recengine.plugin_manager import get_plugin_manager

    ref = config.model.user_encoder
    return get_plugin_manager().get("encoders", ref.name).reads_event_times(ref.params)
