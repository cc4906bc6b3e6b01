"""Synthetic data of the four domain presets: shape, integrity, time, structure, learnability."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from types import ModuleType

import numpy as np
import polars as pl
import pytest

from recengine import synthetic as syn
from recengine.feature_store.schema import REQUEST_ID, VALID_FROM, table_columns
from recengine.plugin_manager import PluginManager
from recengine.plugins.domains import ecommerce, news, social, video

DOMAINS: dict[str, ModuleType] = {
    "ecommerce": ecommerce, "news": news, "video": video, "social": social,
}
# News articles and social posts live a few days: their catalogues must cover each topic or
# city every day or so for freshness to show.
SIZES = {name: (500, 300, 20_000) for name in DOMAINS} | {
    "news": (500, 3_000, 20_000), "social": (500, 3_000, 20_000)}
START = syn.SPAN_START
END = syn.SPAN_END


@cache
def generated(name: str, seed: int = 0):
    users, items, events = SIZES[name]
    return DOMAINS[name].generate(users=users, items=items, events=events, seed=seed)


def groups(name: str, by: str = "category") -> pl.DataFrame:
    """``item_id -> group``: the category each domain's tastes are over, or the author."""
    data = generated(name)
    if by == "author_id":
        return data.items.select("item_id", group="author_id")
    if name == "ecommerce":
        return data.items.select("item_id", group="category")
    if name == "news":
        return data.items.select("item_id", group="topic")
    if name == "video":
        return data.items.select("item_id", group=pl.col("genres").list.first())
    cities = data.users.select(author_id="user_id", group="city")
    return data.items.join(cities, on="author_id").select("item_id", "group")


# Learnability: train on events before a time cut, test on later events of new (user, item)
# pairs. Each case names the event type to predict, the item grouping the profile scorer
# uses, the cut (days before the end) and the popularity window (days before the cut).
# News and social likes are about fresh items, so they are judged on their last days
# against recent popularity; social likes group posts by author (a feed favours people you
# engage with), follows group people by city (people you may know).
LEARNABILITY = {
    "ecommerce": ("ecommerce", None, "category", 15, 90),
    "news": ("news", None, "category", 1, 2),
    "video": ("video", None, "category", 15, 90),
    "social-follow": ("social", "follow", "category", 15, 90),
    "social-like": ("social", "like", "author_id", 2, 4),
}


def hit_rates(
    events: pl.DataFrame,
    group: pl.DataFrame,
    cut: datetime,
    recent: timedelta,
    target: str | None = None,
    k: int = 10,
) -> tuple[float, float]:
    """HR@k after ``cut`` of a group-profile scorer and of popularity (no torch needed).

    Popularity ranks items by their ``target`` events in the ``recent`` time before ``cut``;
    the profile scorer ranks by ``P(group | user's events before cut) * P(item | group)``
    from the same counts. Both skip items the user already had; a user is hit when any of
    their new ``target`` items after the cut is in their top ``k``.
    """
    pair = ["user_id", "item_id"]
    is_target = pl.lit(True) if target is None else pl.col("event_type") == target
    train = events.filter(pl.col("ts") < cut)
    seen = train.select(pair).unique()
    target_pairs = (events.filter((pl.col("ts") >= cut) & is_target).select(pair).unique()
                    .join(seen, on=pair, how="anti").join(seen, on="user_id", how="semi"))
    users = target_pairs.select("user_id").unique()
    counts = (train.filter((pl.col("ts") >= cut - recent) & is_target)
              .group_by("item_id").agg(count=pl.len()).join(group, on="item_id"))

    def hr(scored: pl.DataFrame) -> float:
        top = (scored.join(seen, on=pair, how="anti").sort("user_id", "score", "item_id",
               descending=[False, True, False]).group_by("user_id").head(k))
        hits = target_pairs.join(top, on=pair, how="semi").select("user_id").n_unique()
        return hits / users.height

    popular = counts.sort("count", "item_id", descending=[True, False]).head(k + 200)
    by_popularity = users.join(popular.select("item_id", score="count"), how="cross")
    profile = (
        train.join(group, on="item_id").group_by("user_id", "group").agg(n=pl.len())
        .with_columns(share=pl.col("n") / pl.col("n").sum().over("user_id"))
    )
    in_group = (
        counts.with_columns(p=pl.col("count") / pl.col("count").sum().over("group"))
        .sort("count", "item_id", descending=[True, False]).group_by("group").head(k + 50)
    )
    by_profile = profile.join(in_group, on="group").select(
        "user_id", "item_id", score=pl.col("share") * pl.col("p"))
    return hr(by_profile), hr(by_popularity)


# -- every domain ---------------------------------------------------------------------------
def test_builtin_domains_register_through_the_hook():
    manager = PluginManager()
    manager.load_builtins(tuple(f"recengine.plugins.domains.{name}" for name in DOMAINS))
    assert [info.error for info in manager.plugins] == [None] * len(DOMAINS)
    assert manager.names("domains") == sorted(DOMAINS)
    for name, module in DOMAINS.items():
        domain = manager.domain(name)
        assert domain is module.DOMAIN and domain.generate is module.generate
        assert domain.store_schema is module.SCHEMA and not domain.store_schema.open
        assert set(domain.event_weights) == set(domain.store_schema.event_types)
        assert domain.store_schema.default_event_type in domain.store_schema.event_types
        assert set(domain.text_fields) <= {"title", *domain.store_schema.item_columns}


def test_synthetic_data_lives_beside_its_helpers(tmp_path):
    """One ``SyntheticData`` class, reachable from the helpers' module and the old names."""
    import recengine
    from recengine import domain

    assert recengine.SyntheticData is domain.SyntheticData is syn.SyntheticData
    data = generated("ecommerce")
    assert isinstance(data, syn.SyntheticData)
    paths = data.write(tmp_path / "out")
    assert sorted(paths) == ["events", "items", "searches", "users"]  # ecommerce shoppers search
    for kind, path in paths.items():
        assert path == tmp_path / "out" / f"{kind}.parquet"
        assert pl.read_parquet(path).equals(getattr(data, kind))


@pytest.mark.parametrize("name", DOMAINS)
def test_columns_and_types_match_the_schema(name):
    data, schema = generated(name), DOMAINS[name].SCHEMA
    for kind in ("users", "items", "events"):
        # valid_from is the store's; request_id is optional (only events a recommendation led to name one)
        expected = {c: t.polars for c, t in table_columns(schema, kind).items() if c not in (VALID_FROM, REQUEST_ID)}
        frame = getattr(data, kind)
        assert list(frame.schema) == list(expected), kind
        assert dict(frame.schema) == expected, kind
        nulls = {column for column, n in zip(frame.columns, frame.null_count().row(0)) if n}
        assert nulls <= {"series"}, kind  # only standalone videos have no series


@pytest.mark.parametrize("name", DOMAINS)
def test_same_seed_same_data(name):
    module = DOMAINS[name]
    first, again = (module.generate(users=60, items=80, events=1_500, seed=7) for _ in range(2))
    other = module.generate(users=60, items=80, events=1_500, seed=8)
    for kind in ("users", "items", "events"):
        assert getattr(first, kind).equals(getattr(again, kind)), kind
    assert not first.events.equals(other.events)


@pytest.mark.parametrize("name", DOMAINS)
def test_exact_sizes_and_unique_ids(name):
    users, items, events = SIZES[name]
    data = generated(name)
    assert data.users.height == users
    assert data.items.height == items + (users if name == "social" else 0)
    assert data.events.height == events
    assert data.users["user_id"].is_unique().all() and data.items["item_id"].is_unique().all()
    assert data.users["user_id"][0] == "u0000001"


@pytest.mark.parametrize("name", DOMAINS)
def test_events_reference_known_users_and_items(name):
    data = generated(name)
    assert data.events["user_id"].is_in(data.users["user_id"].implode()).all()
    assert data.events["item_id"].is_in(data.items["item_id"].implode()).all()


@pytest.mark.parametrize("name", DOMAINS)
def test_events_in_span_time_order_and_after_item_creation(name):
    data = generated(name)
    ts = data.events["ts"]
    assert ts.min() >= START and ts.max() < END
    assert ts.is_sorted()
    joined = data.events.join(data.items.select("item_id", "created_at"), on="item_id")
    assert (joined["ts"] >= joined["created_at"]).all()


@pytest.mark.parametrize("name", DOMAINS)
def test_popularity_is_skewed(name):
    data = generated(name)
    counts = data.events["item_id"].value_counts()["count"].sort(descending=True)
    top = max(1, data.items.height // 10)  # 10% of items take over 3x their share
    assert counts.head(top).sum() / data.events.height >= 0.3


@pytest.mark.parametrize("case", LEARNABILITY)
def test_personal_taste_beats_popularity(case):
    name, target, by, cut_days, recent_days = LEARNABILITY[case]
    cut, recent = END - timedelta(days=cut_days), timedelta(days=recent_days)
    personal, popular = hit_rates(generated(name).events, groups(name, by), cut, recent, target)
    assert personal >= 1.5 * popular, (personal, popular)
    assert personal >= 0.2


@pytest.mark.parametrize("name", DOMAINS)
@pytest.mark.parametrize("field", ["users", "items", "events"])
@pytest.mark.parametrize("bad", [0, -3])
def test_sizes_must_be_positive(name, field, bad):
    sizes = {"users": 10, "items": 10, "events": 10, field: bad}
    with pytest.raises(ValueError, match=f"{field} must be a positive integer"):
        DOMAINS[name].generate(**sizes, seed=0)


@pytest.mark.parametrize("name", DOMAINS)
def test_tiny_sizes_work(name):
    users = 2 if name == "social" else 1
    data = DOMAINS[name].generate(users=users, items=1, events=1, seed=0)
    assert data.events.height == 1


# -- domain specifics -----------------------------------------------------------------------
def test_ecommerce_funnel_follows_views():
    events = generated("ecommerce").events
    first = {
        kind: events.filter(pl.col("event_type") == kind).group_by("user_id", "item_id").agg(
            pl.col("ts").min().alias(kind))
        for kind in ("view", "cart")
    }
    pair = ["user_id", "item_id"]
    carts = events.filter(pl.col("event_type") == "cart").join(first["view"], on=pair, how="left")
    assert (carts["ts"] >= carts["view"]).all()
    buys = events.filter(pl.col("event_type") == "purchase").join(first["cart"], on=pair, how="left")
    assert (buys["ts"] >= buys["cart"]).all() and (buys["value"] >= 1).all()
    shares = events["event_type"].value_counts(normalize=True).sort("event_type")
    assert shares["proportion"].to_list() == pytest.approx([0.21, 0.08, 0.71], abs=0.02)


def test_ecommerce_brands_nest_in_categories():
    items = generated("ecommerce").items
    assert (items.group_by("brand").agg(pl.col("category").n_unique())["category"] == 1).all()
    assert (items["price"] > 0).all()


def test_news_clicks_follow_publication_closely():
    data = generated("news")
    joined = data.events.join(data.items.select("item_id", "created_at"), on="item_id")
    age = joined["ts"] - joined["created_at"]
    assert (age.dt.total_microseconds() > 0).all()
    assert (age.dt.total_hours() < 48).mean() >= 0.8
    assert (data.items["created_at"] >= START).mean() >= 0.8  # the catalogue grows in the span
    assert (data.events["value"] > 0).all()


def test_news_truth_names_the_story_each_reader_follows():
    data = generated("news")
    truth = data.truth
    assert (pl.Series(truth["topics"]).gather(truth["item_topic"]) == data.items["topic"]).all()
    row = {item: r for r, item in enumerate(data.items["item_id"].to_list())}
    reader = {user: r for r, user in enumerate(data.users["user_id"].to_list())}
    items = np.array([row[i] for i in data.events["item_id"].to_list()])
    users = np.array([reader[u] for u in data.events["user_id"].to_list()])
    topic = truth["item_topic"][items]
    on_story = truth["reader_story"][users, topic] == truth["item_story"][items]
    # a visit follows the reader's story with chance story_following when a fresh article of it exists
    # (else it reads any of the topic): well above the 1 in STORIES that chance gives (0.40 at this size)
    assert 1 / news.STORIES + 0.1 < on_story.mean() < truth["story_following"] + 1 / news.STORIES
    assert truth["user_topic_taste"].shape == (data.users.height, len(truth["topics"]))
    np.testing.assert_allclose(truth["user_topic_taste"].sum(axis=1), 1.0, rtol=1e-6)


def test_video_completion_reflects_taste():
    data = generated("video")
    genre = data.items.select("item_id", genre=pl.col("genres").list.first())
    events = data.events.join(genre, on="item_id")
    assert ((events["value"] > 0) & (events["value"] <= 1)).all()
    favourite = (
        events.group_by("user_id", "genre").agg(n=pl.len())
        .sort("n", "genre", descending=[True, False]).group_by("user_id").head(1)
        .select("user_id", "genre", favourite=pl.lit(True))
    )
    by_match = events.join(favourite, on=["user_id", "genre"], how="left").group_by(
        pl.col("favourite").fill_null(False)).agg(pl.col("value").mean())
    means = dict(by_match.iter_rows())
    assert means[True] > means[False] + 0.1


def test_video_series_are_watched_in_order():
    data = generated("video")
    items = data.items.select(
        "item_id", "series",
        episode=pl.col("title").str.extract(r": Episode (\d+)$").cast(pl.Int64))
    assert ((items["series"].is_null()) == (items["episode"].is_null())).all()
    watched = (
        data.events.join(items, on="item_id").filter(pl.col("series").is_not_null())
        .sort("user_id", "ts")
        .with_columns(prev_series=pl.col("series").shift().over("user_id"),
                      prev_episode=pl.col("episode").shift().over("user_id"))
        .filter(pl.col("series") == pl.col("prev_series"))
    )
    assert watched.height > 500
    assert (watched["episode"] == watched["prev_episode"] + 1).mean() >= 0.6


def test_social_people_are_users_and_posts_have_authors():
    data = generated("social")
    people = data.items.filter(pl.col("kind") == "person")
    assert people["item_id"].sort().equals(data.users["user_id"].sort(), check_names=False)
    assert (people["item_id"] == people["author_id"]).all()
    posts = data.items.filter(pl.col("kind") == "post")
    assert posts["item_id"].str.starts_with("p").all()
    assert posts["author_id"].is_in(data.users["user_id"].implode()).all()


def test_social_follows_are_unique_never_self_and_close_triangles():
    data = generated("social")
    kinds = data.items.select("item_id", "kind")
    events = data.events.join(kinds, on="item_id")
    assert (events.filter(pl.col("event_type") == "follow")["kind"] == "person").all()
    assert (events.filter(pl.col("event_type") == "like")["kind"] == "post").all()
    assert events.select("user_id", "item_id").is_unique().all()
    follows = events.filter(pl.col("event_type") == "follow").select(a="user_id", b="item_id")
    assert (follows["a"] != follows["b"]).all()
    two_hops = follows.join(follows.rename({"a": "b", "b": "c"}), on="b").select("a", "c").unique()
    closed = follows.join(two_hops.rename({"c": "b"}), on=["a", "b"], how="semi").height
    closed /= follows.height
    users = data.users.height
    density = follows.height / (users * (users - 1))
    assert closed >= 0.3 and closed >= 10 * density, (closed, density)


def test_social_likes_go_to_followed_people_and_own_city():
    data = generated("social")
    city = data.users.select("user_id", "city")
    follows = data.events.filter(pl.col("event_type") == "follow").select(
        "user_id", author_id="item_id")
    likes = (
        data.events.filter(pl.col("event_type") == "like")
        .join(data.items.select("item_id", "author_id"), on="item_id")
        .join(city, on="user_id")
        .join(city.rename({"user_id": "author_id", "city": "author_city"}), on="author_id")
    )
    assert (likes["user_id"] != likes["author_id"]).all()
    followed = likes.join(follows, on=["user_id", "author_id"], how="semi").height / likes.height
    local = (likes["city"] == likes["author_city"]).mean()
    assert followed >= 0.3 and local >= 0.7, (followed, local)


def test_social_rejects_more_events_than_unique_pairs_allow():
    with pytest.raises(ValueError, match="do not fit"):
        social.generate(users=3, items=2, events=100, seed=0)


# -- the shared machinery -------------------------------------------------------------------
def test_check_positive_names_the_argument():
    syn.check_positive(users=1, items=2)
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="items must be a positive integer"):
            syn.check_positive(users=1, items=bad)


def test_make_ids_pads_and_widens():
    assert syn.make_ids("u", 3).to_list() == ["u0000001", "u0000002", "u0000003"]
    assert syn.make_ids("i", 12, width=1).to_list()[::11] == ["i01", "i12"]


def test_sample_rows_follows_each_row():
    rng = np.random.default_rng(0)
    probs = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.1, 0.2, 0.7]])
    rows = np.repeat([0, 1, 2], 20_000)
    picks = syn.sample_rows(rng, probs, rows)
    for row in range(3):
        freq = np.bincount(picks[rows == row], minlength=3) / 20_000
        assert freq == pytest.approx(probs[row], abs=0.015)


def test_group_sampler_weights_groups_and_ranges():
    rng = np.random.default_rng(0)
    groups = np.array([2, 0, 2, 0, 2])
    sampler = syn.GroupSampler(groups, [1.0, 3.0, 1.0, 1.0, 2.0], n_groups=3)
    draws = sampler.sample(rng, np.zeros(40_000, dtype=np.int64))
    assert set(np.unique(draws)) == {1, 3}
    assert (draws == 1).mean() == pytest.approx(0.75, abs=0.01)
    fallback = sampler.sample(rng, np.ones(1_000, dtype=np.int64))  # empty group: anyone
    assert set(np.unique(fallback)) == {0, 1, 2, 3, 4}
    lo, hi = sampler.starts[2] + 1, sampler.stops[2]  # group 2 without its first member
    ranged = sampler.sample_between(rng, np.full(1_000, lo), np.full(1_000, hi))
    assert set(np.unique(ranged)) == {2, 4}
    assert (sampler.sample_between(rng, np.array([lo]), np.array([lo])) == -1).all()


def test_counts_times_and_delays():
    rng = np.random.default_rng(0)
    counts = syn.skewed_counts(rng, 10_000, 100)
    assert counts.sum() == 10_000 and counts.min() >= 1 and counts.max() > 5 * np.median(counts)
    times = syn.sorted_times(rng, counts)
    users = syn.event_users(counts)
    assert times.min() >= syn.START_US and times.max() < syn.END_US
    assert (np.diff(times)[np.diff(users) == 0] >= 0).all()
    upper = np.array([0.0, 10.0, 1e9])
    delays = syn.truncated_exponential(rng, 100.0, np.repeat(upper, 1000))
    assert (delays >= 0).all() and (delays <= np.repeat(upper, 1000)).all()


def test_sticky_stays_within_a_user():
    rng = np.random.default_rng(0)
    counts = np.array([3, 4])
    fresh = np.array([1, 2, 3, 4, 5, 6, 7])
    out = syn.sticky(rng, fresh, syn.sequence_starts(counts), stickiness=1.0)
    assert out.tolist() == [1, 1, 1, 4, 4, 4, 4]


def test_unique_pairs_and_distinct_words():
    rng = np.random.default_rng(0)

    def draw(rng, n):  # heavily repeating proposals
        return rng.integers(0, 3, n), rng.integers(0, 3, n)

    def uniform(rng, n):
        return rng.integers(0, 40, n), rng.integers(0, 40, n)

    a, b = syn.unique_pairs(rng, 300, 40, draw, uniform)
    assert len(a) == 300 and len(set(zip(a.tolist(), b.tolist()))) == 300
    first, second = syn.pick_distinct_by_group(
        rng, np.array([0, 1] * 500), [["x", "y"], ["p", "q", "r"]], 2)
    assert (first != second).all()


@pytest.mark.parametrize("name", DOMAINS)
def test_text_carries_the_category(name):
    """Items of one category share topical words: a word vote recovers the category."""
    data = generated(name)
    items = data.items.join(groups(name), on="item_id")
    if name == "social":
        items = items.filter(pl.col("kind") == "post")  # person titles are just names
    text = pl.concat_str(DOMAINS[name].DOMAIN.text_fields, separator=" ").str.to_lowercase()
    words = items.select("item_id", "group", word=text.str.extract_all(r"[a-z#'-]+")).explode("word")
    votes = words.group_by("word", "group").agg(n=pl.len()).with_columns(
        p=pl.col("n") / pl.col("n").sum().over("word"))
    guess = (
        words.select("item_id", "word").join(votes.rename({"group": "guess"}), on="word")
        .group_by("item_id", "guess").agg(pl.col("p").sum())
        .sort("item_id", "p", "guess", descending=[False, True, False])
        .group_by("item_id").first()
    )
    right = guess.join(items, on="item_id").select(pl.col("guess") == pl.col("group"))
    accuracy = right.mean().item()
    majority = items["group"].value_counts(normalize=True)["proportion"].max()
    # post texts follow the city's two interests, which other cities may share
    assert accuracy >= (2 * majority if name == "social" else 0.8), (accuracy, majority)
