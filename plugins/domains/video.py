"""Video preset: viewers watch films, clips and series episodes of the genres they like.

Viewers have a taste over genres that leans by age band. A pick is a standalone video or an
episode of a series; a series pick usually starts at episode one or resumes, and is often
followed by the next episodes in order (binge runs). The watch value is the completion
fraction in (0, 1]: higher for the viewer's favourite genres and inside a binge, lower for
long videos.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from recengine import Domain, SyntheticData, hookimpl
from recengine import synthetic as syn
from recengine.feature_store.schema import ColumnType, StoreSchema

# the store's event types; the generator's event codes index this list
EVENT_TYPES = ["watch"]
SCHEMA = StoreSchema(
    name="video",
    open=False,
    user_columns={"age": ColumnType.int, "country": ColumnType.string},
    item_columns={
        "genres": ColumnType.string_list,
        "series": ColumnType.string,
        "duration": ColumnType.float,
    },
    event_types=EVENT_TYPES,
    default_event_type="watch",
)

# genre: (title adjectives, title nouns)
GENRES: dict[str, tuple[list[str], list[str]]] = {
    "action": (["Deadly", "Final", "Rogue", "Iron", "Burning"],
        ["Strike", "Mission", "Pursuit", "Showdown", "Getaway"]),
    "comedy": (["Awkward", "Crazy", "Lucky", "Totally", "Hopeless"],
        ["Roommates", "Wedding", "Road Trip", "Neighbours", "Office"]),
    "drama": (["Silent", "Broken", "Distant", "Quiet", "Golden"],
        ["Promise", "Years", "Family", "Letters", "Harbour"]),
    "horror": (["Haunted", "Cursed", "Hollow", "Bleeding", "Dark"],
        ["House", "Woods", "Asylum", "Whispers", "Cellar"]),
    "sci-fi": (["Quantum", "Stellar", "Galactic", "Synthetic", "Orbital"],
        ["Frontier", "Colony", "Signal", "Android", "Voyage"]),
    "documentary": (["Hidden", "Wild", "Untold", "Deep", "Lost"],
        ["Planet", "Oceans", "History", "Empires", "Wildlife"]),
    "animation": (["Little", "Magic", "Brave", "Tiny", "Happy"],
        ["Dragon", "Robot", "Forest Friends", "Penguins", "Kingdom"]),
    "romance": (["Endless", "Summer", "Secret", "Second", "Paris"],
        ["Love", "Kiss", "Romance", "Heart", "Affair"]),
    "thriller": (["Deadly", "Silent", "Double", "Fatal", "Cold"],
        ["Conspiracy", "Witness", "Alibi", "Hostage", "Cover-up"]),
    "crime": (["Dirty", "Brooklyn", "Undercover", "Street", "Organised"],
        ["Detective", "Heist", "Cartel", "Precinct", "Mob"]),
    "fantasy": (["Enchanted", "Ancient", "Shadow", "Crystal", "Dragon"],
        ["Realm", "Throne", "Sorcerer", "Quest", "Prophecy"]),
    "cooking": (["Easy", "Spicy", "Ultimate", "Homemade", "Five-Minute"],
        ["Kitchen", "Recipes", "Bake Off", "Street Food", "Dinners"]),
    "sports": (["Greatest", "Epic", "Ultimate", "Legendary", "Road to"],
        ["Comebacks", "Goals", "Finals", "Champions", "Rivalries"]),
    "music": (["Live", "Unplugged", "Acoustic", "Backstage", "Summer"],
        ["Sessions", "Concert", "Festival", "Tour", "Hits"]),
}
COUNTRIES = ["US", "BR", "IN", "GB", "DE", "FR", "MX", "JP", "KR", "ES", "CA", "AU"]
AGE_BANDS = np.array([13, 20, 45])  # segments: kids, teens, adults, older

SERIES_SHARE = 0.15  # share of catalogue units that are series (the rest are standalone)
STICKINESS = 0.5  # chance a pick stays in the previous pick's genre
BINGE_CONTINUE = 0.65  # chance a series watch is followed by the next episode


def generate(users: int, items: int, events: int, seed: int) -> SyntheticData:
    """Viewers, a catalogue of standalone videos and series episodes, exactly ``events`` watches."""
    syn.check_positive(users=users, items=items, events=events)
    rng = np.random.default_rng(seed)
    names = list(GENRES)

    age = np.clip(rng.normal(33, 16, users), 6, 85).astype(np.int64)
    segment = np.searchsorted(AGE_BANDS, age, side="right")
    priors = syn.segment_priors(rng, syn.zipf_shares(rng, len(names), 0.8), len(AGE_BANDS) + 1, 1.0)
    tastes = syn.user_tastes(rng, priors, segment, concentration=0.8)
    user_ids = syn.make_ids("u", users)
    users_frame = pl.DataFrame({
        "user_id": user_ids,
        "age": age,
        "country": pl.Series(COUNTRIES).gather(
            syn.weighted_choice(rng, syn.zipf_weights(len(COUNTRIES), 0.8), users)),
    })

    # Catalogue units: standalone videos (one item) or series (consecutive episode items).
    unit_size = np.where(rng.random(items) < SERIES_SHARE, rng.integers(3, 13, items), 1)
    n_units = int(np.searchsorted(np.cumsum(unit_size), items)) + 1
    unit_size = unit_size[:n_units]
    unit_size[-1] -= unit_size.sum() - items
    is_series = unit_size > 1
    unit_genre = syn.weighted_choice(rng, priors.mean(axis=0), n_units)
    unit_start = np.cumsum(unit_size) - unit_size
    unit = np.repeat(np.arange(n_units), unit_size)
    episode = np.arange(items) - unit_start[unit]
    genre = unit_genre[unit]
    weight = syn.zipf_within_groups(rng, unit_genre, 1.0)[unit] * 0.8**episode
    sampler = syn.GroupSampler(genre, weight, len(names))

    counts = syn.skewed_counts(rng, events, users)
    user, item, binge = _watches(rng, tastes, sampler, unit, episode, unit_size, unit_start, counts)
    ts = syn.sorted_times(rng, counts)

    duration = np.where(
        is_series[unit],
        rng.lognormal(np.log(35 * 60), 0.4, n_units)[unit] * rng.lognormal(0, 0.1, items),
        np.where(rng.random(items) < 0.5,  # clips or films
                 rng.uniform(3, 15, items) * 60, rng.uniform(80, 150, items) * 60),
    ).round()
    affinity = tastes[user, genre[item]] * len(names)
    logit = (-1.2 + 0.7 * np.log(affinity) + 0.8 * binge - 0.3 * np.log(duration[item] / 1800)
             + rng.normal(0.0, 0.8, events))
    completion = np.round(np.clip(1.15 / (1.0 + np.exp(-logit)), 0.01, 1.0), 4)

    item_ids = syn.make_ids("i", items)
    events_frame = syn.events_frame(user_ids, item_ids, user, item, EVENT_TYPES,
                                    np.zeros(events, dtype=np.int64), completion, ts)
    # Back catalogue predates the span, new releases land in it; episodes release weekly.
    launch = np.where(rng.random(n_units) < 0.8,
                      syn.START_US - rng.integers(0, 3 * 365 * syn.US_PER_DAY, n_units),
                      syn.uniform_times(rng, n_units))
    planned = launch[unit] + episode * 7 * syn.US_PER_DAY
    created = syn.created_before_first_event(rng, planned, item, ts)
    items_frame = _catalogue_text(rng, unit_genre, unit, episode, is_series).select(
        item_id=item_ids,
        title="title",
        created_at=syn.datetimes(created),
        genres=_genres(rng, genre, names),
        series="series",
        duration=pl.Series(duration),
        unit=pl.Series(unit),
    ).with_columns(  # an episode never comes out before the previous one
        pl.col("created_at").reverse().cum_min().reverse().over("unit")
    ).drop("unit")
    return SyntheticData(users=users_frame, items=items_frame, events=events_frame)


def _watches(
    rng: np.random.Generator,
    tastes: np.ndarray,
    sampler: syn.GroupSampler,
    unit: np.ndarray,
    episode: np.ndarray,
    unit_size: np.ndarray,
    unit_start: np.ndarray,
    counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users, items and binge flags of each watch, ``counts[u]`` per user in watch order.

    Each user makes ``counts[u]`` picks (genre from taste, sticky); a series pick starts at
    episode one or resumes at the picked episode and runs on for a geometric number of next
    episodes. The expanded sequence is cut back to ``counts[u]`` watches per user.
    """
    user, genre = syn.taste_categories(rng, tastes, counts, STICKINESS)
    pick = sampler.sample(rng, genre)
    pick_unit = unit[pick]
    first = np.where(rng.random(len(pick)) < 0.5, 0, episode[pick])
    run = np.minimum(rng.geometric(1.0 - BINGE_CONTINUE, len(pick)), unit_size[pick_unit] - first)
    run_of = np.repeat(np.arange(len(pick)), run)
    step = np.arange(len(run_of)) - np.repeat(np.cumsum(run) - run, run)
    watch_user = user[run_of]
    expanded = np.bincount(watch_user, minlength=len(counts))
    position = np.arange(len(run_of)) - (np.cumsum(expanded) - expanded)[watch_user]
    keep = position < counts[watch_user]
    item = unit_start[pick_unit[run_of]] + first[run_of] + step
    return watch_user[keep], item[keep], (step > 0)[keep]


def _genres(rng: np.random.Generator, genre: np.ndarray, names: list[str]) -> pl.Series:
    """The item's genre first, then up to two other genres."""
    n = len(genre)
    second, third = syn.pick_distinct_by_group(rng, np.zeros(n, dtype=np.int64), [names], 2)
    frame = pl.DataFrame({
        "main": pl.Series(names).gather(genre), "second": second, "third": third,
        "extra": rng.choice([0, 1, 2], n, p=[0.4, 0.4, 0.2]),
    })
    return frame.select(
        pl.concat_list("main", "second", "third").list.head(pl.col("extra") + 1)
        .list.unique(maintain_order=True).alias("genres")
    ).to_series()


def _catalogue_text(
    rng: np.random.Generator, unit_genre: np.ndarray, unit: np.ndarray, episode: np.ndarray,
    is_series: np.ndarray,
) -> pl.DataFrame:
    """Series names and titles ("Quantum Frontier: Episode 3") from the genre's words."""
    adjectives, nouns = ([v[k] for v in GENRES.values()] for k in (0, 1))
    name = pl.format("{} {}", syn.pick_by_group(rng, unit_genre, adjectives),
                     syn.pick_by_group(rng, unit_genre, nouns))
    units = pl.select(name=name).to_series().gather(unit)
    frame = pl.DataFrame({"name": units, "episode": episode + 1, "is_series": is_series[unit]})
    return frame.select(
        title=pl.when("is_series").then(pl.format("{}: Episode {}", "name", "episode"))
        .otherwise("name"),
        series=pl.when("is_series").then("name"),
    )


DOMAIN = Domain(
    name="video",
    description="Streaming service: films, clips and series by genre; watches carry completion.",
    store_schema=SCHEMA,
    event_weights={"watch": 1.0},
    text_fields=["title"],
    generate=generate,
    # each watch trains with its completion fraction as weight; genre-diverse top lists
    pipeline={
        "model": {"item_encoder": {"name": "dense", "params": {"use_features": True}}},
        "train": {"protocol": "seq", "weight_by_value": True},
        "ranking": {"rankers": [
            {"name": "popularity-fallback"},
            {"name": "exclude-seen"},
            {"name": "diversity", "params": {"field": "genres", "max_per_value": 4}},
        ]},
    },
)


@hookimpl
def register_domains(register: Callable[[Domain], None]) -> None:
    """Register the video preset."""
    register(DOMAIN)
