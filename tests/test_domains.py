"""Each domain preset's behaviour, visible through recommendations on generated data."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

from recengine.config import PipelineConfig
from recengine.dataset import prepare
from recengine.feature_store import FeatureStore
from recengine.plugin_manager import get_plugin_manager
from recengine.project import domain_config, domain_paths, resolve_targets
from recengine.recommender import Recommender


def _recommender(project: Path, domain: str) -> Recommender:
    target = resolve_targets(project, [domain])[0]
    return Recommender.load(target.bundle, snapshot=target.snapshot)


def _users_with(recommender: Recommender, event_type: str, limit: int = 40) -> list[str]:
    users = []
    for user in recommender.bundle.users.ids:
        features = recommender.online.user(user)
        if features and event_type in features.history_event_types:
            users.append(user)
        if len(users) == limit:
            break
    return users


def test_ecommerce_weights_purchases_over_carts_over_views() -> None:
    weights = get_plugin_manager().domain("ecommerce").event_weights
    assert weights["purchase"] > weights["cart"] > weights["view"]


def test_ecommerce_never_recommends_purchased_and_diversifies(project: Path) -> None:
    recommender = _recommender(project, "ecommerce")
    buyers = _users_with(recommender, "purchase")
    assert buyers
    for user in buyers:
        features = recommender.online.user(user)
        purchased = {i for i, t in zip(features.history, features.history_event_types) if t == "purchase"}
        top = recommender.recommend(user, 10)
        assert len(top) == 10 and not purchased & {r.item_id for r in top}
        categories = Counter(recommender.catalog.columns["category"][recommender.item_index[r.item_id]] for r in top)
        assert max(categories.values()) <= 3


def test_ecommerce_training_weights_follow_event_types(project: Path) -> None:
    config = domain_config("ecommerce")
    with FeatureStore(domain_paths(project, "ecommerce")["store"], read_only=True) as store:
        data = prepare(store, config, {"view": 1.0, "cart": 3.0, "purchase": 5.0})
    assert set(np.unique(data.interactions.weights).round(3)) <= {1.0, 3.0, 5.0}
    assert (data.interactions.weights == 5.0).any()


def test_news_freshness_and_hard_cutoff(project: Path) -> None:
    recommender = _recommender(project, "news")
    created = recommender.catalog.columns["created_at"]
    now = created[1:].max().astype("datetime64[us]").astype(object)
    oldest_allowed = np.datetime64(now - timedelta(hours=72), "us")
    for user in recommender.bundle.users.ids[:30]:
        for item in recommender.recommend(user, 10, now=now):
            assert created[recommender.item_index[item.item_id]] >= oldest_allowed


def test_news_brand_new_article_is_reachable_without_clicks(project: Path, tmp_path: Path) -> None:
    paths = domain_paths(project, "news")
    target = resolve_targets(project, ["news"])[0]
    with FeatureStore(paths["store"], read_only=True) as store:
        items = store.latest("items")
    newest = items.sort("created_at").tail(1).row(0, named=True)
    article = pl.DataFrame({"item_id": ["breaking-1"], "title": ["Breaking: " + newest["title"]],
                            "body": [newest["body"]], "topic": [newest["topic"]],
                            "created_at": [newest["created_at"] + timedelta(hours=1)]})
    with FeatureStore(paths["store"]) as store:
        store.ingest(article, kind="items")
        store.publish(tmp_path / "snapshots")  # a private snapshot root: the session's stays as it was
    recommender = Recommender.load(target.bundle, snapshot=tmp_path / "snapshots")
    assert recommender.cold_items == 1 and "breaking-1" not in recommender.bundle.items.index
    vector = recommender.item_matrix[recommender.item_index["breaking-1"]]
    assert np.abs(vector).sum() > 0  # represented through its topic, not an id
    now = article["created_at"][0]
    hits = [user for user in recommender.bundle.users.ids[:50]
            if "breaking-1" in {r.item_id for r in recommender.recommend(user, 10, now=now,
                                                                        filters={"topic": [newest["topic"]]})}]
    assert hits, "a brand-new article must be recommendable before anyone clicked it"
    reasons = next(r for r in recommender.recommend(hits[0], 10, now=now, filters={"topic": [newest["topic"]]})
                   if r.item_id == "breaking-1").reasons
    assert any(reason.startswith("fresh") for reason in reasons)


def test_video_trains_with_completion_weights(project: Path) -> None:
    config = domain_config("video")
    assert config.train.weight_by_value
    with FeatureStore(domain_paths(project, "video")["store"], read_only=True) as store:
        data = prepare(store, config)
    inter = data.interactions
    assert np.allclose(inter.weights, inter.values) and 0 < inter.weights.min() < inter.weights.max() <= 1.0


def test_video_genre_diversity(project: Path) -> None:
    recommender = _recommender(project, "video")
    for user in recommender.bundle.users.ids[:20]:
        top = recommender.recommend(user, 10)
        genres = recommender.catalog.columns["genres"]
        counts = Counter(g for r in top for g in set(genres[recommender.item_index[r.item_id]]))
        assert len(counts) >= 3


def test_social_people_you_may_know(project: Path) -> None:
    recommender = _recommender(project, "social")
    followers = _users_with(recommender, "follow")
    saw_friend_of_friend = False
    for user in followers:
        features = recommender.online.user(user)
        followed = {i for i, t in zip(features.history, features.history_event_types) if t == "follow"}
        top = recommender.recommend(user, 10, filters={"kind": ["person"]})
        ids = {r.item_id for r in top}
        assert user not in ids and not followed & ids
        saw_friend_of_friend |= any("people you follow" in reason for r in top for reason in r.reasons)
    assert saw_friend_of_friend


def test_domain_configs_validate() -> None:
    from recengine.config import validate_components

    for domain in ("ecommerce", "news", "video", "social"):
        config = domain_config(domain)
        assert isinstance(config, PipelineConfig) and config.domain == domain
        validate_components(config)
