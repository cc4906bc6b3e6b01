"""News preset: readers click fresh articles of the topics and stories they follow.

The catalogue grows over the whole span (most articles are published inside it). Readers
have a taste over topics that leans by region; each visit picks a topic (often the one of
the previous click) and then a popular article of that topic published shortly before the
visit, so clicks come after publication and mostly within two days of it. Each topic runs a
few stories (its headline objects: "budget plan", "tax bill"), and every reader follows one
story per topic: most visits read the latest articles of that story. An article's story is
named only in its text (the ``topic`` column is the coarse topic), so a text tower can rank
new articles by story where an attributes-only tower sees their topic alone. The click value
is the dwell time in seconds, longer for topics the reader likes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from recengine import Domain, SyntheticData, hookimpl
from recengine import synthetic as syn
from recengine.feature_store.schema import ColumnType, StoreSchema

# the store's event types; the generator's event codes index this list
EVENT_TYPES = ["click"]
SCHEMA = StoreSchema(
    name="news",
    open=False,
    user_columns={"region": ColumnType.string},
    item_columns={"body": ColumnType.string, "topic": ColumnType.string},
    event_types=EVENT_TYPES,
    default_event_type="click",
)

# topic: (subjects, verbs, objects, details)
TOPICS: dict[str, tuple[list[str], list[str], list[str], list[str]]] = {
    "politics": (
        ["Senate", "Parliament", "Governor", "Prime Minister", "Opposition leader"],
        ["approves", "rejects", "debates", "unveils", "delays"],
        ["budget plan", "election reform", "tax bill", "coalition deal", "immigration policy"],
        ["ahead of the vote", "after weeks of talks", "despite protests", "as polls tighten"],
    ),
    "business": (
        ["Central bank", "Retail giant", "Startup", "Investors", "Automaker"],
        ["raises", "cuts", "reports", "announces", "expands"],
        ["interest rates", "quarterly profits", "hiring plans", "a merger", "dividends"],
        ["as markets rally", "amid inflation fears", "beating forecasts", "after a weak quarter"],
    ),
    "technology": (
        ["Chipmaker", "Tech startup", "Smartphone maker", "Researchers", "Software firm"],
        ["launches", "unveils", "patches", "open-sources", "acquires"],
        ["an AI model", "a new processor", "a security flaw", "a cloud platform", "a new phone"],
        ["for developers", "to rival competitors", "after a data breach", "with faster chips"],
    ),
    "science": (
        ["Astronomers", "Biologists", "Physicists", "Space agency", "Geologists"],
        ["discover", "observe", "map", "measure", "launch"],
        ["an exoplanet", "a new species", "gravitational waves", "a lunar probe", "fossils"],
        ["using a new telescope", "in a landmark study", "deep under the ice", "in a new paper"],
    ),
    "sports": (
        ["Champions", "Striker", "Head coach", "Underdogs", "Star forward"],
        ["win", "lose", "sign", "clinch", "extend"],
        ["the league title", "a transfer deal", "the final", "a playoff spot", "a new contract"],
        ["in extra time", "after a penalty shootout", "before a home crowd", "with a late goal"],
    ),
    "entertainment": (
        ["Pop star", "Film studio", "Streaming service", "Director", "Band"],
        ["releases", "announces", "cancels", "premieres", "tops"],
        ["a new album", "a sequel", "a world tour", "the box office", "a documentary series"],
        ["to rave reviews", "after fan demand", "at the film festival", "on the charts"],
    ),
    "health": (
        ["Doctors", "Health officials", "Hospital", "Researchers", "Regulators"],
        ["approve", "warn about", "test", "recommend", "study"],
        ["a new vaccine", "flu season", "a cancer therapy", "sleep habits", "a diet trend"],
        ["in clinical trials", "as cases rise", "for older adults", "in a nationwide survey"],
    ),
    "climate": (
        ["Climate scientists", "Environment ministers", "Activists", "Energy firm", "Coastal city"],
        ["pledge", "warn of", "track", "invest in", "prepare for"],
        ["rising sea levels", "record heatwaves", "solar farms", "emissions", "wildfire risk"],
        ["at the climate summit", "after a hot summer", "as glaciers melt", "under new targets"],
    ),
    "travel": (
        ["Airline", "Tourism board", "Travellers", "Cruise line", "Hotel chain"],
        ["adds", "promotes", "flock to", "resumes", "discounts"],
        ["new routes", "island getaways", "city breaks", "mountain resorts", "summer flights"],
        ["for the holiday season", "as demand soars", "with cheaper fares", "despite delays"],
    ),
    "food": (
        ["Chef", "Restaurant", "Food critics", "Bakery", "Farmers"],
        ["opens", "reviews", "reinvents", "celebrates", "harvests"],
        ["a tasting menu", "street food", "sourdough bread", "a vegan kitchen", "seasonal produce"],
        ["with local ingredients", "to long queues", "in the old town", "for the winter menu"],
    ),
    "culture": (
        ["Museum", "Novelist", "Gallery", "Orchestra", "Theatre"],
        ["exhibits", "publishes", "restores", "performs", "revives"],
        ["a lost masterpiece", "a debut novel", "modern sculptures", "a symphony", "a manuscript"],
        ["to packed audiences", "after restoration", "for the first time", "at the arts festival"],
    ),
    "world": (
        ["United Nations", "Foreign ministers", "Aid agencies", "Neighbouring states", "Diplomats"],
        ["negotiate", "condemn", "sign", "host", "mediate"],
        ["a ceasefire", "a trade agreement", "peace talks", "humanitarian aid", "border disputes"],
        ["after months of strain", "at a regional summit", "amid pressure", "in a statement"],
    ),
}
REGIONS = ["north-america", "europe", "latin-america", "east-asia", "south-asia", "africa",
           "middle-east", "oceania"]

STICKINESS = 0.4  # chance a click stays in the previous click's topic
STORIES = 5  # stories per topic: each topic's headline objects, in order
STORY_FOLLOWING = 0.7  # chance a visit reads the reader's story of the topic rather than any article of it
assert all(len(words[2]) == STORIES for words in TOPICS.values()), "every topic needs one object per story"
FRESH_WINDOW_US = 6 * syn.US_PER_HOUR  # a visit looks at articles at least this recent...
BACKLOG_MEAN_US = 24 * syn.US_PER_HOUR  # ...plus an exponential extra look-back of this mean


def generate(users: int, items: int, events: int, seed: int) -> SyntheticData:
    """Readers, articles published over the span and exactly ``events`` clicks."""
    syn.check_positive(users=users, items=items, events=events)
    rng = np.random.default_rng(seed)
    names = list(TOPICS)

    region = syn.weighted_choice(rng, syn.zipf_weights(len(REGIONS), 0.6), users)
    priors = syn.segment_priors(rng, syn.zipf_shares(rng, len(names), 0.7), len(REGIONS))
    tastes = syn.user_tastes(rng, priors, region, concentration=1.5)
    user_ids = syn.make_ids("u", users)
    users_frame = pl.DataFrame({"user_id": user_ids, "region": pl.Series(REGIONS).gather(region)})

    # Articles in publish order: a week of backlog, then a steady stream over the span.
    published = np.sort(np.where(
        rng.random(items) < 0.1,
        syn.uniform_times(rng, items, syn.START_US - 7 * syn.US_PER_DAY, syn.START_US),
        syn.uniform_times(rng, items, syn.START_US, syn.END_US - syn.US_PER_HOUR),
    ))
    published[0] = syn.START_US - 7 * syn.US_PER_DAY  # so every visit has an earlier article
    topic = syn.weighted_choice(rng, priors.mean(axis=0), items)
    story = rng.integers(0, STORIES, size=items)
    weights = syn.zipf_within_groups(rng, topic, 1.3)
    by_topic = syn.GroupSampler(topic, weights, len(names))
    by_story = syn.GroupSampler(topic * STORIES + story, weights, len(names) * STORIES)

    counts = syn.skewed_counts(rng, events, users)
    user, wanted = syn.taste_categories(rng, tastes, counts, STICKINESS)
    ts = syn.sorted_times(rng, counts)
    item = _fresh_articles(rng, by_topic, published, wanted, ts)
    # a reader's story of topic t: (offset + t * stride) mod STORIES, a different one per topic
    offset, stride = rng.integers(0, STORIES, size=users), rng.integers(1, STORIES, size=users)
    reader_story = (offset[:, None] + np.arange(len(names))[None, :] * stride[:, None]) % STORIES  # [users, topics]
    follows = rng.random(events) < STORY_FOLLOWING
    followed = wanted * STORIES + reader_story[user, wanted]
    in_story = _fresh_articles(rng, by_story, published, followed[follows], ts[follows], fallback=False)
    item[np.flatnonzero(follows)[in_story >= 0]] = in_story[in_story >= 0]  # none fresh: any of the topic
    affinity = tastes[user, topic[item]] * len(names)
    dwell = np.exp(rng.normal(np.log(45.0) + 0.35 * np.log(affinity), 0.7))
    value = np.round(np.clip(dwell, 3.0, 1800.0), 1)

    item_ids = syn.make_ids("i", items)
    events_frame = syn.events_frame(user_ids, item_ids, user, item, EVENT_TYPES,
                                    np.zeros(events, dtype=np.int64), value, ts)
    items_frame = _articles_text(rng, topic, story).select(
        item_id=item_ids,
        title="title",
        created_at=syn.datetimes(published),
        body="body",
        topic=pl.Series(names).gather(topic),
    )
    truth = {  # rows in the frames' order; what a model must learn, for simulators and ceilings
        "user_topic_taste": tastes, "item_topic": topic, "item_story": story, "item_appeal": weights,
        "reader_story": reader_story,
        "topics": names, "story_following": STORY_FOLLOWING,
    }
    return SyntheticData(users=users_frame, items=items_frame, events=events_frame, truth=truth)


def _fresh_articles(
    rng: np.random.Generator,
    sampler: syn.GroupSampler,
    published: np.ndarray,
    topic: np.ndarray,
    ts: np.ndarray,
    fallback: bool = True,
) -> np.ndarray:
    """For each visit, a popular article of group ``topic`` published shortly before ``ts``.

    Articles are in publish order within each group of the sampler's layout, so "published in
    the look-back window" is a contiguous range found by ``searchsorted``. A visit whose
    window is empty reads the latest earlier article of the group, or of any group; without
    ``fallback`` it gets -1 instead (the caller picks another way).
    """
    base = int(published[0])
    stride = int(syn.END_US - base + 1)
    keys = sampler.sorted_groups * stride + (published[sampler.members] - base)
    window = FRESH_WINDOW_US + rng.exponential(BACKLOG_MEAN_US, len(ts)).astype(np.int64)
    # integer keys: the first key >= x sits right after the last key <= x - 1
    hi = syn.locate(keys, topic * stride + (ts - base) - 1)
    lo = np.maximum(syn.locate(keys, topic * stride + (ts - window - base) - 1),
                    sampler.starts[topic])
    item = sampler.sample_between(rng, lo, hi)
    stale = item < 0
    if not fallback:
        return item
    in_topic = stale & (hi > sampler.starts[topic])
    item[in_topic] = sampler.members[hi[in_topic] - 1]
    anywhere = stale & ~in_topic
    item[anywhere] = np.searchsorted(published, ts[anywhere], side="left") - 1
    return item


def _articles_text(rng: np.random.Generator, topic: np.ndarray, story: np.ndarray) -> pl.DataFrame:
    """Headlines ("Senate approves budget plan": the object is the story) and two-sentence bodies
    whose second sentence mentions another story of the topic."""
    subjects, verbs, objects, details = ([v[k] for v in TOPICS.values()] for k in range(4))
    subject, subject2 = syn.pick_distinct_by_group(rng, topic, subjects, 2)
    verb, verb2 = syn.pick_distinct_by_group(rng, topic, verbs, 2)
    flat = pl.Series([word for words in objects for word in words], dtype=pl.String)
    other = (story + rng.integers(1, STORIES, size=story.size)) % STORIES
    obj, obj2 = flat.gather(topic * STORIES + story), flat.gather(topic * STORIES + other)
    frame = pl.DataFrame({
        "subject": subject, "verb": verb, "object": obj,
        "detail": syn.pick_by_group(rng, topic, details),
        "subject2": subject2, "verb2": verb2, "object2": obj2,
    })
    return frame.with_columns(
        title=pl.format("{} {} {}", "subject", "verb", "object"),
        body=pl.format("{} {} {} {}. {} {} {}, reporters said.", "subject", "verb", "object",
                       "detail", "subject2", "verb2", "object2"),
    )


DOMAIN = Domain(
    name="news",
    description="News site: a growing stream of articles by topic, clicks weighted by freshness.",
    store_schema=SCHEMA,
    event_weights={"click": 1.0},
    text_fields=["title", "body"],
    generate=generate,
    # the item tower reads the topic, so articles published after training are ranked from
    # their attributes; scores halve every 12 hours and nothing older than 3 days is shown
    pipeline={
        "model": {"item_encoder": {"name": "dense", "params": {"use_features": True}}},
        "train": {"protocol": "seq"},
        "ranking": {"rankers": [
            {"name": "popularity-fallback"},
            {"name": "exclude-seen"},
            {"name": "freshness", "params": {"half_life_hours": 12, "max_age_hours": 72}},
            {"name": "topk"},
        ], "candidates": 1000},
    },
)


@hookimpl
def register_domains(register: Callable[[Domain], None]) -> None:
    """Register the news preset."""
    register(DOMAIN)
