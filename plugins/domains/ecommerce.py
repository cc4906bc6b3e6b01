"""E-commerce preset: shoppers view, add to cart and buy branded products.

Shoppers have a taste over product categories that leans by age band and gender. Products
belong to a brand of their category and are Zipf-popular inside it. Views come in sessions
that stay in one category; carts follow views of the same product minutes later and
purchases follow carts, both more often for products of the shopper's favourite categories.
Some views come from a search a few minutes earlier that names the product ("wireless
headphones", "Norvex headphones"), so a search foreshadows the view and the cart and purchase
that may follow; a share of searches are about something else (noise). The searches
(``searches.parquet``) are what a model that reads queries can learn from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from recengine import ConfigError, Domain, SyntheticData, hookimpl
from recengine import synthetic as syn
from recengine.feature_store.schema import ColumnType, StoreSchema
from recengine.plugins.domains import ecommerce_zh

# the store's event types; the generator's event codes index this list
EVENT_TYPES = ["view", "cart", "purchase"]
SCHEMA = StoreSchema(
    name="ecommerce",
    open=False,
    user_columns={"age": ColumnType.int, "gender": ColumnType.string, "country": ColumnType.string},
    item_columns={
        "description": ColumnType.string,
        "category": ColumnType.string,
        "brand": ColumnType.string,
        "price": ColumnType.float,
    },
    event_types=EVENT_TYPES,
    default_event_type="view",
)

# category: (median price, product nouns, adjectives, selling points)
CATEGORIES: dict[str, tuple[float, list[str], list[str], list[str]]] = {
    "electronics": (
        60.0,
        ["headphones", "earbuds", "speaker", "charger", "smartwatch", "tablet"],
        ["wireless", "bluetooth", "portable", "smart", "noise-cancelling"],
        ["long battery life", "fast charging", "a USB-C port", "voice control"],
    ),
    "computers": (
        250.0,
        ["laptop", "monitor", "keyboard", "mouse", "webcam", "router"],
        ["gaming", "ergonomic", "mechanical", "ultrawide", "backlit"],
        ["a fast processor", "plenty of memory", "a 4K display", "wifi 6 support"],
    ),
    "kitchen": (
        35.0,
        ["blender", "skillet", "knife set", "kettle", "coffee maker", "toaster"],
        ["stainless", "nonstick", "electric", "cast-iron", "dishwasher-safe"],
        ["even heating", "a sharp edge", "easy cleaning", "a brew timer"],
    ),
    "furniture": (
        180.0,
        ["sofa", "desk", "bookshelf", "armchair", "bed frame", "dining table"],
        ["oak", "upholstered", "modern", "foldable", "mid-century"],
        ["solid wood legs", "easy assembly", "hidden storage", "a stain-resistant fabric"],
    ),
    "beauty": (
        18.0,
        ["serum", "moisturizer", "lipstick", "shampoo", "face mask", "perfume"],
        ["hydrating", "organic", "vegan", "fragrance-free", "matte"],
        ["hyaluronic acid", "vitamin C", "natural oils", "all-day hold"],
    ),
    "clothing": (
        30.0,
        ["t-shirt", "hoodie", "jeans", "dress", "jacket", "sweater"],
        ["cotton", "slim-fit", "oversized", "linen", "waterproof"],
        ["a relaxed cut", "breathable fabric", "reinforced seams", "deep pockets"],
    ),
    "shoes": (
        70.0,
        ["sneakers", "boots", "sandals", "loafers", "running shoes", "slippers"],
        ["leather", "cushioned", "lightweight", "suede", "non-slip"],
        ["a memory-foam insole", "a rubber outsole", "arch support", "a wide toe box"],
    ),
    "sports": (
        40.0,
        ["yoga mat", "dumbbells", "tennis racket", "football", "resistance bands", "bike helmet"],
        ["adjustable", "pro", "training", "durable", "grip"],
        ["a non-slip surface", "a carry strap", "shock absorption", "competition weight"],
    ),
    "outdoors": (
        55.0,
        ["tent", "sleeping bag", "backpack", "headlamp", "camping stove", "water filter"],
        ["ultralight", "weatherproof", "insulated", "hiking", "trail"],
        ["a rainfly", "a compression sack", "a hydration sleeve", "a four-season rating"],
    ),
    "toys": (
        22.0,
        ["building blocks", "puzzle", "plush bear", "toy car", "board game", "doll house"],
        ["educational", "colourful", "wooden", "interactive", "classic"],
        ["safe rounded edges", "hours of play", "family fun", "motor-skill practice"],
    ),
    "books": (
        15.0,
        ["novel", "cookbook", "biography", "thriller", "fantasy saga", "travel guide"],
        ["bestselling", "illustrated", "paperback", "hardcover", "award-winning"],
        ["a gripping plot", "vivid characters", "expert recipes", "stunning photography"],
    ),
    "grocery": (
        8.0,
        ["olive oil", "coffee beans", "green tea", "pasta", "granola", "dark chocolate"],
        ["organic", "fair-trade", "gluten-free", "roasted", "artisan"],
        ["rich flavour", "whole ingredients", "no added sugar", "a resealable bag"],
    ),
    "pets": (
        20.0,
        ["dog food", "cat litter", "pet bed", "chew toy", "leash", "aquarium filter"],
        ["grain-free", "orthopedic", "chewable", "reflective", "odor-control"],
        ["real chicken", "washable covers", "vet-approved formula", "a padded handle"],
    ),
    "garden": (
        28.0,
        ["garden hose", "pruning shears", "planter", "lawn mower", "seed kit", "watering can"],
        ["expandable", "ceramic", "cordless", "heirloom", "galvanized"],
        ["rust protection", "a sharp bypass blade", "drainage holes", "a mulching mode"],
    ),
    "automotive": (
        45.0,
        ["car charger", "dash cam", "floor mats", "tire inflator", "seat covers", "wiper blades"],
        ["all-weather", "heavy-duty", "universal", "digital", "custom-fit"],
        ["night vision", "a pressure gauge", "easy installation", "a snug fit"],
    ),
    "baby": (
        25.0,
        ["stroller", "baby monitor", "diaper bag", "high chair", "baby carrier", "crib sheet"],
        ["foldable", "hypoallergenic", "adjustable", "soft", "convertible"],
        ["a one-hand fold", "night vision", "organic cotton", "a five-point harness"],
    ),
}
# per language: category -> (name shown in the catalogue, nouns, adjectives, selling points)
CATEGORIES_BY_LANGUAGE: dict[str, dict[str, tuple[str, list[str], list[str], list[str]]]] = {
    "en": {name: (name, *entry[1:]) for name, entry in CATEGORIES.items()},
    "zh": ecommerce_zh.CATEGORIES_ZH,
}
assert all(
    list(words) == list(CATEGORIES)
    and all(len(words[name][k]) == len(CATEGORIES_BY_LANGUAGE["en"][name][k]) for name in CATEGORIES for k in (1, 2, 3))
    for words in CATEGORIES_BY_LANGUAGE.values()
), "every language's word lists must parallel CATEGORIES, so a seed makes the same catalogue in each"
COUNTRIES = ["US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "ES", "IT", "NL", "MX", "PL", "SE"]
GENDERS = ["female", "male", "other"]
AGE_BANDS = np.array([25, 40, 60])  # segment boundaries: <25, 25-39, 40-59, 60+

CART_RATE = 0.3  # carts per view
PURCHASE_RATE = 0.4  # purchases per cart
STICKINESS = 0.6  # chance a view stays in the previous view's category
CHUNK_EVENTS = 1_000_000  # views made (and written) at a time: peak memory follows this, not the event count
SEARCH_RATE = 0.25  # views that a search for the product came before (a quarter of product views)
SEARCH_NOISE = 0.25  # searches for a random other product instead (the shopper browsed, or changed their mind)
SEARCH_LEAD_US = 5 * syn.US_PER_MINUTE  # mean time from the search to the view


LANGUAGES = ("en", "zh")  # the catalogue's text: English, or Chinese (ecommerce_zh), word for word


def generate(users: int, items: int, events: int, seed: int, chunk_events: int = CHUNK_EVENTS,
             language: str = "en") -> SyntheticData:
    """Shoppers, products and a view -> cart -> purchase funnel of exactly ``events`` events.

    Events are made for one block of users at a time (about ``chunk_events`` views each) and
    streamed: ``write`` sends each block to events.parquet as it is made. Within a block
    events are in time order; with a single block (up to ``chunk_events`` views) the whole
    table is, and the data equals what the unchunked generator made for the same seed.
    ``language="zh"`` writes titles, descriptions, brands and category names in Chinese; every
    draw is the same, so it is the English catalogue of that seed translated.
    """
    syn.check_positive(users=users, items=items, events=events, chunk_events=chunk_events)
    if language not in LANGUAGES:
        raise ConfigError(f"the ecommerce generator writes {', '.join(LANGUAGES)}, not {language!r}")
    return SyntheticData.streamed(lambda sink: _build(users, items, events, seed, chunk_events, sink, language))


def generate_zh(users: int, items: int, events: int, seed: int) -> SyntheticData:
    """:func:`generate` with the catalogue in Chinese."""
    return generate(users, items, events, seed, language="zh")


def _build(users: int, items: int, events: int, seed: int, chunk_events: int,
           sink: syn.EventSink,
           language: str = "en") -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any], pl.DataFrame]:
    """The users, then the events block by block into ``sink``, then the items (their creation
    times depend on every event) and the searches: the draws of :func:`generate`."""
    rng = np.random.default_rng(seed)
    names = list(CATEGORIES)

    # Users: segment = gender x age band, each with its own lean over categories.
    age = np.clip(rng.normal(38, 13, users), 16, 85).astype(np.int64)
    gender = syn.weighted_choice(rng, [0.49, 0.48, 0.03], users)
    segment = gender * (len(AGE_BANDS) + 1) + np.searchsorted(AGE_BANDS, age, side="right")
    priors = syn.segment_priors(rng, syn.zipf_shares(rng, len(names), 0.8),
                                len(GENDERS) * (len(AGE_BANDS) + 1))
    tastes = syn.user_tastes(rng, priors, segment, concentration=0.8)
    user_ids = syn.make_ids("u", users)
    users_frame = pl.DataFrame({
        "user_id": user_ids,
        "age": age,
        "gender": pl.Series(GENDERS).gather(gender),
        "country": pl.Series(COUNTRIES).gather(
            syn.weighted_choice(rng, syn.zipf_weights(len(COUNTRIES)), users)),
    })

    # Items: category, then a brand of that category, Zipf-popular inside the category.
    category = syn.weighted_choice(rng, priors.mean(axis=0), items)
    brands_per_category = int(np.clip(items // (20 * len(names)), 3, 60))
    brand_names = syn.coined_names(rng, len(names) * brands_per_category)
    if language == "zh":  # the same draws, Chinese names
        brand_names = ecommerce_zh.brand_names(list(range(len(brand_names))))
    brand = category * brands_per_category + syn.weighted_choice(
        rng, syn.zipf_weights(brands_per_category, 0.7), items)
    popularity = syn.zipf_within_groups(rng, category, exponent=1.0)
    sampler = syn.GroupSampler(category, popularity, len(names))

    # Events, one block of users at a time; each block gets its share of the carts and purchases.
    n_cart = int(events * CART_RATE / (1 + CART_RATE + CART_RATE * PURCHASE_RATE))
    n_purchase = int(n_cart * PURCHASE_RATE)
    counts = syn.skewed_counts(rng, events - n_cart - n_purchase, users)
    blocks = syn.user_chunks(counts, chunk_events)
    carts = syn.apportion(n_cart, [counts[a:b].sum() for a, b in blocks])
    purchases = syn.apportion(n_purchase, carts)
    item_ids = syn.make_ids("i", items)
    first = None
    search_rng = np.random.default_rng([seed, 1])  # its own stream: every other draw is as without searches
    searched: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for (start, stop), block_carts, block_purchases in zip(blocks, carts, purchases):
        user, item, kind, value, ts = _funnel(rng, counts[start:stop], tastes[start:stop], category, sampler,
                                              int(block_carts), int(block_purchases))
        first = syn.first_event_times(items, item, ts, first)
        sink(syn.events_frame(user_ids, item_ids, user + start, item, EVENT_TYPES, kind, value, ts))
        searched.append(_searches_before_views(search_rng, user + start, item, kind, ts, items))

    # Most products predate the span; new arrivals appear in it, never after their first event.
    planned = np.where(
        rng.random(items) < 0.85,
        syn.START_US - rng.integers(0, 730 * syn.US_PER_DAY, items),
        syn.uniform_times(rng, items),
    )
    assert first is not None  # at least one block: users >= 1
    created = syn.created_before(rng, planned, first)
    median_price = np.array([CATEGORIES[name][0] for name in names])
    brand_premium = rng.lognormal(0.0, 0.3, len(brand_names))
    price = median_price[category] * brand_premium[brand] * rng.lognormal(0.0, 0.5, items)
    price = np.floor(price) + 0.99
    words = CATEGORIES_BY_LANGUAGE[language]
    shown = [words[name][0] for name in names]  # the category's name in the catalogue's language
    text = _items_text(rng, category, pl.Series(brand_names).gather(brand), language)
    items_frame = text.select(
        item_id=item_ids,
        title="title",
        created_at=syn.datetimes(created),
        description="description",
        category=pl.Series(shown).gather(category),
        brand="brand",
        price=pl.Series(price),
    )
    truth = {"user_category_taste": tastes, "item_category": category, "item_appeal": popularity,
             "categories": shown}
    return users_frame, items_frame, truth, _search_frame(search_rng, searched, text, user_ids, language)


def _searches_before_views(rng: np.random.Generator, user: np.ndarray, item: np.ndarray, kind: np.ndarray,
                           ts: np.ndarray, items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, searched product, time) of one block's searches: a share of its views had a search
    for the product minutes before (a random other product, for the noisy ones)."""
    views = np.flatnonzero((kind == 0) & (rng.random(kind.size) < SEARCH_RATE))
    lead = syn.truncated_exponential(rng, SEARCH_LEAD_US, ts[views] - syn.START_US).astype(np.int64)
    target = np.where(rng.random(views.size) < SEARCH_NOISE, rng.integers(0, items, views.size), item[views])
    # compact (16 bytes a search): kept across blocks until the items' words exist
    return user[views].astype(np.int32), target.astype(np.int32), ts[views] - lead


def _search_frame(rng: np.random.Generator, searched: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  text: pl.DataFrame, user_ids: pl.Series, language: str) -> pl.DataFrame:
    """The searches as events rows (user_id, query, ts) in time order: the product's adjective and
    noun ("wireless headphones"), or its brand and noun ("Norvex headphones"), as shoppers type them."""
    user, item, ts = (np.concatenate(parts) for parts in zip(*searched))
    order = np.argsort(ts, kind="stable")
    rows = pl.DataFrame({"user": user[order], "item": item[order], "ts": ts[order],
                         "by_brand": rng.random(item.size) < 0.3})
    words = text.select("brand", "adjective", "noun").with_row_index("item").with_columns(pl.col("item").cast(pl.Int32))
    separator = "" if language == "zh" else " "
    picked = rows.join(words, on="item", how="left", maintain_order="left")  # polars strings: no Python objects
    return picked.select(
        user_id=user_ids.gather(picked["user"]),
        query=pl.concat_str(pl.when("by_brand").then("brand").otherwise("adjective"), "noun", separator=separator),
        ts=pl.col("ts").cast(pl.Datetime("us")),
    )


def _funnel(rng: np.random.Generator, counts: np.ndarray, tastes: np.ndarray, category: np.ndarray,
            sampler: syn.GroupSampler, n_cart: int,
            n_purchase: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One block's events: (user within the block, item, event code, value, time).

    Views follow taste in sticky sessions; carts select views of favoured categories, and
    purchases select carts, each a short delay later.
    """
    view_user, view_category = syn.taste_categories(rng, tastes, counts, STICKINESS)
    view_item = sampler.sample(rng, view_category)
    view_ts = syn.sorted_times(rng, counts)
    affinity = tastes[view_user, category[view_item]]
    carted = syn.weighted_subset(rng, affinity, n_cart)
    cart_ts = _later(rng, view_ts[carted], 20 * syn.US_PER_MINUTE)
    bought = syn.weighted_subset(rng, affinity[carted], n_purchase)
    purchase_ts = _later(rng, cart_ts[bought], 2 * syn.US_PER_HOUR)
    quantity = rng.geometric(0.75, n_purchase).astype(np.float64)
    n_view = view_user.size
    user = np.concatenate([view_user, view_user[carted], view_user[carted][bought]])
    item = np.concatenate([view_item, view_item[carted], view_item[carted][bought]])
    ts = np.concatenate([view_ts, cart_ts, purchase_ts])
    kind = np.repeat(np.arange(3), [n_view, n_cart, n_purchase])
    value = np.concatenate([np.ones(n_view + n_cart), quantity])
    return user, item, kind, value, ts


def _later(rng: np.random.Generator, ts: np.ndarray, mean_delay_us: float) -> np.ndarray:
    """Times a short random delay after ``ts``, still inside the span."""
    delay = syn.truncated_exponential(rng, mean_delay_us, syn.END_US - 1 - ts)
    return ts + delay.astype(np.int64)


def _items_text(rng: np.random.Generator, category: np.ndarray, brand: pl.Series,
                language: str = "en") -> pl.DataFrame:
    """Titles ("Norvex wireless headphones X40", "星悦无线耳机 X40") and descriptions from the
    category's words in ``language``."""
    words = CATEGORIES_BY_LANGUAGE[language]
    nouns = [entry[1] for entry in words.values()]
    adjectives = [entry[2] for entry in words.values()]
    points = [entry[3] for entry in words.values()]
    adjective, adjective2 = syn.pick_distinct_by_group(rng, category, adjectives, 2)
    point, point2 = syn.pick_distinct_by_group(rng, category, points, 2)
    frame = pl.DataFrame({
        "brand": brand,
        "noun": syn.pick_by_group(rng, category, nouns),
        "adjective": adjective,
        "adjective2": adjective2,
        "point": point,
        "point2": point2,
        "model": syn.pick(rng, list("ACEGKMRSTVXZ"), len(category)),
        "number": rng.integers(1, 100, len(category)) * 10,
    })
    if language == "zh":
        return frame.with_columns(
            title=pl.format("{}{}{} {}{}", "brand", "adjective", "noun", "model", "number"),
            description=pl.format("{}{}：{}、{}，{}，{}。",
                                  "brand", "noun", "adjective", "adjective2", "point", "point2"),
        )
    return frame.with_columns(
        title=pl.format("{} {} {} {}{}", "brand", "adjective", "noun", "model", "number"),
        description=pl.format(
            "{} {}: {} and {}, with {} and {}.",
            "brand", "noun", "adjective", "adjective2", "point", "point2",
        ),
    )


DOMAIN = Domain(
    name="ecommerce",
    description="Online shop: products in branded categories, view -> cart -> purchase funnel.",
    store_schema=SCHEMA,
    event_weights={"view": 1.0, "cart": 3.0, "purchase": 5.0},
    text_fields=["title", "description"],
    click_events=["view"],
    conversion_events=["purchase"],
    generate=generate,
    generate_in={"zh": generate_zh},
    # a transformer over the shopping history; purchases weigh 5x views in training;
    # already-purchased products are never shown again; at most 3 per category in a top 10
    pipeline={
        "model": {"item_encoder": {"name": "dense", "params": {"use_features": True}}},
        "train": {"protocol": "seq"},
        "ranking": {"rankers": [
            {"name": "popularity-fallback"},
            {"name": "exclude-seen", "params": {"event_types": ["purchase"]}},
            {"name": "diversity", "params": {"field": "category", "max_per_value": 3}},
        ]},
    },
)


@hookimpl
def register_domains(register: Callable[[Domain], None]) -> None:
    """Register the ecommerce preset."""
    register(DOMAIN)
