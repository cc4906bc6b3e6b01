"""Social preset: people follow people and like posts.

Items are of two kinds: every user is also a *person* item whose ``item_id`` equals its
``user_id`` (so "people you may know" can leave the user out), and *posts* (``p0000001``...)
written by users. People live in cities (communities) and sit on a ring inside theirs: most
follows go to ring neighbours (so friends of friends are likely friends: triadic closure),
some to the community's or the network's popular people. Likes go mostly to posts of
followed people and of the own community. Follows and likes are unique and never target
oneself (no self-follow, no like of one's own post).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from recengine import Domain, SyntheticData, hookimpl
from recengine import synthetic as syn
from recengine.errors import ConfigError
from recengine.feature_store.schema import ColumnType, StoreSchema

# the store's event types; the generator's event codes index this list
EVENT_TYPES = ["follow", "like"]
SCHEMA = StoreSchema(
    name="social",
    open=False,
    user_columns={"age": ColumnType.int, "city": ColumnType.string},
    # an item's city is the person's own, or the post author's: the community signal the item
    # tower learns from (people and posts of one city are followed and liked together)
    item_columns={"kind": ColumnType.string, "author_id": ColumnType.string, "city": ColumnType.string},
    event_types=EVENT_TYPES,
    default_event_type="like",
)

CITIES = ["Lisbon", "Austin", "Osaka", "Nairobi", "Bergen", "Porto", "Denver", "Krakow", "Lyon",
          "Perth", "Cusco", "Quebec", "Seville", "Tbilisi", "Hanoi", "Zagreb", "Malmo", "Ghent",
          "Leeds", "Bilbao", "Turin", "Cork", "Graz", "Tampere", "Brno", "Accra", "Dakar",
          "Recife", "Rosario", "Tartu", "Riga", "Split", "Bruges", "Bologna", "Utrecht",
          "Aarhus", "Halifax", "Hobart", "Kyoto", "Busan"]
FIRST_NAMES = ["Maya", "Liam", "Ana", "Noah", "Sofia", "Kai", "Lena", "Omar", "Ines", "Yuki",
               "Ravi", "Emma", "Tariq", "Chloe", "Mateo", "Aisha", "Jonas", "Nora", "Diego",
               "Priya", "Felix", "Zara", "Hugo", "Mei", "Amara", "Leo", "Sara", "Ivan"]
LAST_NAMES = ["Okafor", "Silva", "Tanaka", "Novak", "Garcia", "Berg", "Khan", "Rossi", "Dubois",
              "Kim", "Mensah", "Larsen", "Costa", "Ivanova", "Nguyen", "Moreau", "Patel",
              "Schmidt", "Lopez", "Haddad", "Walsh", "Sato", "Kowalski", "Ferreira"]
OPENERS = ["Loving", "Just tried", "Can't get enough of", "Weekend plans:", "Throwback to",
           "Who else is into", "Finally sharing", "Still thinking about"]
# interest: (phrases, hashtags); each city leans to two interests, so posts carry its signal
INTERESTS: dict[str, tuple[list[str], list[str]]] = {
    "hiking": (
        ["the sunrise trail", "this mountain lake", "my new hiking boots", "the summit view"],
        ["#hiking", "#outdoors"],
    ),
    "cooking": (
        ["homemade ramen", "this sourdough loaf", "a spicy curry recipe", "grandma's lasagna"],
        ["#cooking", "#foodie"],
    ),
    "music": (
        ["last night's jazz gig", "this vinyl find", "our band rehearsal", "the festival lineup"],
        ["#music", "#livemusic"],
    ),
    "football": (
        ["the derby match", "our five-a-side league", "that late winner", "the new kit"],
        ["#football", "#matchday"],
    ),
    "photography": (
        ["golden hour portraits", "this street shot", "my new lens", "long exposure at the pier"],
        ["#photography", "#streetphoto"],
    ),
    "gaming": (
        ["the new RPG", "a speedrun attempt", "retro console night", "this co-op boss fight"],
        ["#gaming", "#gamer"],
    ),
    "books": (
        ["this fantasy novel", "the book club pick", "a poetry collection", "my reading nook"],
        ["#books", "#bookclub"],
    ),
    "cycling": (
        ["a century ride", "the coastal bike path", "my gravel bike", "a rainy commute"],
        ["#cycling", "#bikelife"],
    ),
    "gardening": (
        ["the tomato harvest", "my balcony herbs", "spring tulips", "a compost bin"],
        ["#gardening", "#plants"],
    ),
    "art": (
        ["the new gallery show", "my watercolour sketch", "street murals", "a pottery class"],
        ["#art", "#artist"],
    ),
    "travel": (
        ["a night train", "this hidden beach", "the old town market", "a weekend in the hills"],
        ["#travel", "#wanderlust"],
    ),
    "fitness": (
        ["morning yoga", "a new deadlift record", "the 10k race", "a HIIT session"],
        ["#fitness", "#workout"],
    ),
}

FOLLOW_SHARE = 0.3  # share of events that are follows (the rest are likes)
FOLLOW_MIX = (0.7, 0.22)  # follows of ring neighbours, of the city's famous; the rest: stars
LIKE_MIX = (0.65, 0.3)  # likes of followed people's posts, of the city's; the rest: anywhere
LIKE_DELAY_US = 2 * syn.US_PER_DAY  # mean delay of a like after the post


def generate(users: int, items: int, events: int, seed: int) -> SyntheticData:
    """People (every user, as a person item), ``items`` posts and exactly ``events`` events.

    ``items`` counts posts; the items table also holds one person item per user. Follows
    and likes are unique, so ``events`` may not exceed what the network can hold
    (``ValueError`` says how much it can).
    """
    syn.check_positive(users=users, items=items, events=events)
    n_follow, n_like = _split(users, items, events)
    rng = np.random.default_rng(seed)

    # People: a city (community), a place on its ring, fame and activity.
    n_cities = int(np.clip(users // 50, 1, len(CITIES)))
    city = syn.weighted_choice(rng, syn.zipf_weights(n_cities, 0.5), users)
    ring = syn.GroupSampler(city, np.ones(users), n_cities)
    ring_pos = np.empty(users, dtype=np.int64)
    ring_pos[ring.members] = np.arange(users) - ring.starts[ring.sorted_groups]
    fame = syn.zipf_within_groups(rng, city, 1.0)
    famous_in = syn.GroupSampler(city, fame, n_cities)
    activity = rng.lognormal(0.0, 1.0, users)
    user_ids = syn.make_ids("u", users)
    users_frame = pl.DataFrame({
        "user_id": user_ids,
        "age": np.clip(rng.normal(32, 11, users), 16, 80).astype(np.int64),
        "city": pl.Series(CITIES).gather(city),
    })

    # Posts: famous, active people post more; recent posts have had less time to be liked.
    author = syn.weighted_choice(rng, np.sqrt(fame) * activity, items)
    post_ts = syn.uniform_times(
        rng, items, syn.START_US - 2 * syn.US_PER_DAY, syn.END_US - syn.US_PER_HOUR)
    exposure = np.clip((syn.END_US - post_ts) / LIKE_DELAY_US, 0.05, 1.0)
    post_weight = fame[author] * rng.lognormal(0.0, 1.0, items) * exposure

    def follow_draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Mostly ring neighbours, then the city's and the network's famous people."""
        src = syn.weighted_choice(rng, activity, n)
        step = rng.geometric(0.35, n) * np.where(rng.random(n) < 0.5, -1, 1)
        size = (ring.stops - ring.starts)[city[src]]
        dst = ring.members[ring.starts[city[src]] + (ring_pos[src] + step) % size]
        mode = rng.random(n)
        local = (mode >= FOLLOW_MIX[0]) & (mode < sum(FOLLOW_MIX))
        dst[local] = famous_in.sample(rng, city[src[local]])
        anywhere = mode >= sum(FOLLOW_MIX)
        dst[anywhere] = syn.weighted_choice(rng, fame, int(anywhere.sum()))
        return src[src != dst], dst[src != dst]

    def follow_fallback(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        src = rng.integers(0, users, n)
        return src, (src + rng.integers(1, users, n)) % users

    follow_src, follow_dst = syn.unique_pairs(rng, n_follow, users, follow_draw, follow_fallback)
    follow_ts = syn.uniform_times(rng, n_follow)

    # Likes: posts of followed people (who post), of the own city, or popular anywhere.
    posting = (np.bincount(author, minlength=users) > 0)[follow_dst]
    followed = follow_dst[posting]
    by_follower = syn.GroupSampler(follow_src[posting], np.ones(len(followed)), users)
    by_author = syn.GroupSampler(author, post_weight, users)
    by_city = syn.GroupSampler(city[author], post_weight, n_cities)

    def like_draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        liker = syn.weighted_choice(rng, activity, n)
        mode = rng.random(n)
        post = np.full(n, -1, dtype=np.int64)
        friends = np.flatnonzero(mode < LIKE_MIX[0])
        edge = by_follower.sample_between(
            rng, by_follower.starts[liker[friends]], by_follower.stops[liker[friends]])
        post[friends[edge >= 0]] = by_author.sample(rng, followed[edge[edge >= 0]])
        local = (post < 0) & (mode < sum(LIKE_MIX))  # includes likers who follow no poster
        post[local] = by_city.sample(rng, city[liker[local]])
        anywhere = post < 0
        post[anywhere] = syn.weighted_choice(rng, post_weight, int(anywhere.sum()))
        return liker[author[post] != liker], post[author[post] != liker]

    def like_fallback(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        liker, post = rng.integers(0, users, n), rng.integers(0, items, n)
        return liker[author[post] != liker], post[author[post] != liker]

    like_user, like_post = syn.unique_pairs(rng, n_like, items, like_draw, like_fallback)
    seen = np.maximum(post_ts[like_post] + 1, syn.START_US)  # likes fall inside the span
    delay = syn.truncated_exponential(rng, LIKE_DELAY_US, syn.END_US - 1 - seen)
    like_ts = seen + delay.astype(np.int64)

    # Events: person items are indexed 0..users-1, posts users..users+items-1.
    item_ids = pl.concat([user_ids, syn.make_ids("p", items)])
    user = np.concatenate([follow_src, like_user])
    item = np.concatenate([follow_dst, users + like_post])
    ts = np.concatenate([follow_ts, like_ts])
    kind = np.repeat([0, 1], [n_follow, n_like])
    events_frame = syn.events_frame(user_ids, item_ids, user, item, EVENT_TYPES, kind,
                                    np.ones(events), ts)

    # A person exists before anything they do or anything done to them.
    signup = np.where(rng.random(users) < 0.9,
                      syn.START_US - rng.integers(0, 5 * 365 * syn.US_PER_DAY, users),
                      syn.uniform_times(rng, users))
    joined = syn.created_before_first_event(
        rng, signup,
        np.concatenate([follow_dst, follow_src, like_user, author]),
        np.concatenate([follow_ts, follow_ts, like_ts, post_ts]),
    )
    items_frame = pl.DataFrame({
        "item_id": item_ids,
        "title": pl.concat([_display_names(rng, users), _post_texts(rng, city[author], n_cities)]),
        "created_at": syn.datetimes(np.concatenate([joined, post_ts])),
        "kind": pl.Series(["person", "post"]).gather(np.repeat([0, 1], [users, items])),
        "author_id": pl.concat([user_ids, user_ids.gather(author)]),
        "city": pl.Series(CITIES).gather(np.concatenate([city, city[author]])),
    })
    return SyntheticData(users=users_frame, items=items_frame, events=events_frame)


def _split(users: int, items: int, events: int) -> tuple[int, int]:
    """Follows and likes for ``events``, within what unique pairs allow (at most half of them)."""
    follow_room = users * (users - 1) // 2
    like_room = (users - 1) * items // 2
    if events > follow_room + like_room:
        raise ConfigError(
            f"social: {events} events do not fit {users} users and {items} posts; follows and "
            f"likes are unique, so at most {follow_room + like_room} events"
        )
    n_follow = min(round(events * FOLLOW_SHARE), follow_room)
    n_follow = max(n_follow, events - like_room)
    return n_follow, events - n_follow


def _display_names(rng: np.random.Generator, n: int) -> pl.Series:
    """Person titles: "Maya Okafor"."""
    first, last = syn.pick(rng, FIRST_NAMES, n), syn.pick(rng, LAST_NAMES, n)
    return pl.select(pl.format("{} {}", first, last)).to_series()


def _post_texts(rng: np.random.Generator, city: np.ndarray, n_cities: int) -> pl.Series:
    """Post titles ("Just tried homemade ramen #cooking"), mostly about the city's interests."""
    n_interests = len(INTERESTS)
    first = rng.integers(0, n_interests, n_cities)
    second = (first + rng.integers(1, n_interests, n_cities)) % n_interests
    leanings = np.stack([first, second], axis=1)
    interest = np.where(rng.random(len(city)) < 0.8,
                        leanings[city, rng.integers(0, 2, len(city))],
                        rng.integers(0, n_interests, len(city)))
    phrases, tags = ([v[k] for v in INTERESTS.values()] for k in (0, 1))
    return pl.select(pl.format(
        "{} {} {}", syn.pick(rng, OPENERS, len(city)),
        syn.pick_by_group(rng, interest, phrases), syn.pick_by_group(rng, interest, tags),
    )).to_series()


DOMAIN = Domain(
    name="social",
    description="Social network: people in city communities follow each other and like posts.",
    store_schema=SCHEMA,
    event_weights={"follow": 2.0, "like": 1.0},
    text_fields=["title"],
    click_events=["like"],
    conversion_events=["follow"],
    generate=generate,
    # people you may know: learned candidates plus friends of friends; never yourself,
    # never someone you already follow or a post you already liked
    pipeline={
        "model": {"item_encoder": {"name": "dense", "params": {"use_features": True}}},
        "train": {"protocol": "seq"},
        "ranking": {"rankers": [
            {"name": "popularity-fallback"},
            {"name": "exclude-seen"},
            {"name": "friends-of-friends"},
            {"name": "topk"},
        ]},
    },
)


@hookimpl
def register_domains(register: Callable[[Domain], None]) -> None:
    """Register the social preset."""
    register(DOMAIN)
