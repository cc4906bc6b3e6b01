"""Rankers: a contract every registered ranker keeps, then the behaviour of each built-in.

The catalogue has 20 items in three categories (items 1-7 "a", 8-14 "b", 15-20 "c") with
vectors clustered by category, creation times 12 hours apart (item 20 newest) and
popularity rising with the item index except for a few hits.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from pydantic import ValidationError

from recengine.components import Candidates, Catalog, RankContext, Ranker
from recengine.errors import RequestError
from recengine.plugin_manager import PluginManager
from recengine.plugins.rankers.diversity import Diversity
from recengine.plugins.rankers.filters import ExcludeSeen, TopK
from recengine.plugins.rankers.freshness import Freshness
from recengine.plugins.rankers.popularity import PopularityFallback
from recengine.ranking import check_filter, list_membership

N = 20
T0 = datetime(2024, 3, 1)
NEWEST = T0 + timedelta(hours=12 * (N - 1))


def _manager() -> PluginManager:
    manager = PluginManager()
    manager.load_builtins()
    return manager


RANKER_NAMES = _manager().names("rankers")


def make_catalog() -> Catalog:
    rng = np.random.default_rng(0)
    index = np.arange(N + 1)
    category = np.array([""] + ["a"] * 7 + ["b"] * 7 + ["c"] * 6, dtype=object)
    centres = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [0.0, 0.0, 1.0], "": [0.0, 0.0, 0.0]}
    vectors = np.array([centres[c] for c in category]) + 0.05 * rng.standard_normal((N + 1, 3))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    created = np.array([np.datetime64("NaT")] + [np.datetime64(T0 + timedelta(hours=12 * (i - 1)), "us")
                                                 for i in range(1, N + 1)], dtype="datetime64[us]")
    created[14] = np.datetime64("NaT")  # one undated item
    genres = np.empty(N + 1, dtype=object)
    for i in index:
        genres[i] = ["drama", "comedy"] if i % 4 == 0 else (["drama"] if i % 2 else [])
    brand = np.array([None] + [f"brand{i % 2}" if i != 5 else None for i in range(1, N + 1)], dtype=object)
    popularity = index.astype(np.float64)
    popularity[[3, 9, 16]] = [100.0, 90.0, 80.0]
    popularity[0] = 1000.0  # padding item: must never be recommended
    return Catalog(
        item_ids=np.array([""] + [f"i{i}" for i in range(1, N + 1)], dtype=object),
        columns={"category": category, "created_at": created, "genres": genres, "brand": brand,
                 "price": index * 10.0},
        vectors=vectors.astype(np.float32),
        popularity=popularity,
    )


CATALOG = make_catalog()


def context(**overrides) -> RankContext:
    values = dict(user_id="u1", k=5, catalog=CATALOG, history=np.array([2, 4, 6], dtype=np.int64),
                  history_event_types=["view", "purchase", "view"], now=NEWEST)
    values.update(overrides)
    return RankContext(**values)


def candidates(items, scores=None) -> Candidates:
    items = np.asarray(items, dtype=np.int64)
    if scores is None:
        scores = np.linspace(1.0, 0.0, len(items))
    return Candidates(items, np.asarray(scores, dtype=np.float32), [["model"] for _ in items])


ALL = candidates(np.arange(1, N + 1), np.linspace(-1.0, 1.0, N))  # higher index, higher score
CONTEXTS = {
    "known": context(),
    "unknown": context(known_user=False, history=np.zeros(0, dtype=np.int64), history_event_types=[]),
    "no-now": context(now=None, exclude=np.array([7])),
}


def build(name: str, **params) -> Ranker:
    factory = _manager().get("rankers", name)
    return factory(factory.Config(**params))


def check_valid(out: Candidates, allowed_items: set[int]) -> None:
    assert isinstance(out, Candidates)
    assert out.items.ndim == 1 and np.issubdtype(out.items.dtype, np.integer)
    assert np.issubdtype(out.scores.dtype, np.floating)
    assert len(out.items) == len(out.scores) == len(out.reasons)
    assert all(isinstance(r, list) and all(isinstance(s, str) for s in r) for r in out.reasons)
    assert set(out.items.tolist()) <= allowed_items
    assert len(set(out.items.tolist())) == len(out.items), "duplicate items"


# ---------------------------------------------------------------------------------------
# The contract, over every registered ranker
# ---------------------------------------------------------------------------------------


def test_builtin_rankers_are_registered():
    assert {"topk", "exclude-seen", "diversity", "freshness", "popularity-fallback"} <= set(RANKER_NAMES)


@pytest.mark.parametrize("name", RANKER_NAMES)
@pytest.mark.parametrize("ctx", list(CONTEXTS), ids=list(CONTEXTS))
def test_empty_candidates_give_valid_output(name, ctx):
    out = build(name).rank(Candidates.empty(), CONTEXTS[ctx])
    check_valid(out, set(range(1, N + 1)))


@pytest.mark.parametrize("name", RANKER_NAMES)
@pytest.mark.parametrize("ctx", list(CONTEXTS), ids=list(CONTEXTS))
def test_input_not_mutated_and_output_items_come_from_input_or_catalogue(name, ctx):
    shuffled = ALL.take(np.random.default_rng(1).permutation(N))
    before = copy.deepcopy(shuffled)
    reasons_before = [id(r) for r in shuffled.reasons]
    out = build(name).rank(shuffled, CONTEXTS[ctx])  # may be `shuffled` itself when nothing changes
    np.testing.assert_array_equal(shuffled.items, before.items)
    np.testing.assert_array_equal(shuffled.scores, before.scores)
    assert shuffled.reasons == before.reasons
    assert [id(r) for r in shuffled.reasons] == reasons_before
    check_valid(out, set(range(1, N + 1)))


@pytest.mark.parametrize("name", RANKER_NAMES)
def test_config_rejects_unknown_parameters(name):
    factory = _manager().get("rankers", name)
    with pytest.raises(ValidationError):
        factory.Config(no_such_parameter=1)


BAD_PARAMS = {
    "topk": [{"k": 0}, {"k": "many"}],
    "exclude-seen": [{"event_types": "purchase"}],
    "diversity": [{"lambda": 1.5}, {"lambda": -0.1}, {"k": 0}, {"max_per_value": 0}],
    "freshness": [{"half_life_hours": 0}, {"max_age_hours": -1}, {"half_life_hours": "soon"}],
    "popularity-fallback": [{"k": 0}, {"top_up": "maybe"}],
}


@pytest.mark.parametrize("name,params", [(n, p) for n, ps in BAD_PARAMS.items() for p in ps])
def test_config_rejects_bad_values(name, params):
    with pytest.raises(ValidationError):
        build(name, **params)


@pytest.mark.parametrize("name", RANKER_NAMES)
@pytest.mark.parametrize("ctx", list(CONTEXTS), ids=list(CONTEXTS))
def test_deterministic(name, ctx):
    ranker = build(name)
    runs = [ranker.rank(ALL, CONTEXTS[ctx]) for _ in range(2)] + [build(name).rank(ALL, CONTEXTS[ctx])]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.items, runs[0].items)
        np.testing.assert_array_equal(other.scores, runs[0].scores)
        assert other.reasons == runs[0].reasons


@pytest.fixture(scope="module")
def large_request() -> tuple[Candidates, RankContext]:
    """1000 candidates from a 100k-item catalogue, with history, exclusions and a filter."""
    rng = np.random.default_rng(2)
    size = 100_000
    vectors = rng.standard_normal((size + 1, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    created = np.datetime64("2024-01-01", "us") + rng.integers(0, 10**13, size + 1).astype("timedelta64[us]")
    catalog = Catalog(
        item_ids=np.array([""] + [f"i{i}" for i in range(size)], dtype=object),
        columns={"category": np.array([f"c{i % 20}" for i in range(size + 1)], dtype=object),
                 "created_at": created},
        vectors=vectors,
        popularity=rng.integers(0, 1000, size + 1).astype(np.float64),
    )
    ctx = RankContext(user_id="u", k=10, catalog=catalog, history=rng.integers(1, size, 50),
                      history_event_types=["view"] * 50, exclude=np.array([1, 2, 3]),
                      filters={"category": [f"c{i}" for i in range(10)]})
    return candidates(rng.choice(np.arange(1, size + 1), 1000, replace=False), rng.standard_normal(1000)), ctx


COST_CASES = [(name, {}) for name in RANKER_NAMES] + [
    ("diversity", {"field": "category"}),
    ("freshness", {"max_age_hours": 24 * 30}),
    ("exclude-seen", {"event_types": ["view"]}),
]


@pytest.mark.parametrize("name,params", COST_CASES)
def test_cost_for_a_thousand_candidates(name, params, large_request):
    """Each ranker stays around a millisecond at 1000 candidates from a 100k catalogue."""
    cands, ctx = large_request
    ranker = build(name, **params)
    ranker.rank(cands, ctx)  # warm caches (per-snapshot sorts)
    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        ranker.rank(cands, ctx)
        best = min(best, time.perf_counter() - start)
    assert best < 0.003, f"{name}: {best * 1e3:.2f} ms for 1000 candidates"


# ---------------------------------------------------------------------------------------
# topk
# ---------------------------------------------------------------------------------------


def test_topk_keeps_the_best_k_in_score_order():
    out = TopK().rank(ALL.take(np.random.default_rng(3).permutation(N)), context(k=4))
    assert out.items.tolist() == [20, 19, 18, 17]
    assert np.all(np.diff(out.scores) <= 0)


def test_topk_breaks_ties_by_item_index_and_uses_its_own_k():
    cands = candidates([9, 3, 7, 5, 1], [0.5, 0.5, 0.9, 0.5, np.nan])
    out = TopK(TopK.Config(k=3)).rank(cands, context(k=10))
    assert out.items.tolist() == [7, 3, 5]
    assert list(out.reasons) == [["model"]] * 3
    assert TopK().rank(cands, context(k=10)).items.tolist() == [7, 3, 5, 9, 1]  # NaN last


# ---------------------------------------------------------------------------------------
# exclude-seen
# ---------------------------------------------------------------------------------------


def test_exclude_seen_drops_history_and_request_exclusions():
    out = ExcludeSeen().rank(ALL, context(exclude=np.array([10, 11])))
    assert set(out.items.tolist()) == set(range(1, N + 1)) - {2, 4, 6, 10, 11}
    np.testing.assert_array_equal(out.scores, ALL.scores[np.isin(ALL.items, out.items)])  # order kept


def test_exclude_seen_respects_event_types():
    out = ExcludeSeen(ExcludeSeen.Config(event_types=["purchase"])).rank(ALL, context())
    assert 4 not in out.items and {2, 6} <= set(out.items.tolist())
    with pytest.raises(ValueError, match="one event type per history item"):
        ExcludeSeen(ExcludeSeen.Config(event_types=["purchase"])).rank(ALL, context(history_event_types=[]))


def test_exclude_seen_applies_filters():
    ranker = ExcludeSeen()
    by_category = ranker.rank(ALL, context(history=np.zeros(0, dtype=np.int64), history_event_types=[],
                                           filters={"category": ["b", "c"]}))
    assert by_category.items.tolist() == list(range(8, N + 1))
    by_genre = ranker.rank(ALL, context(filters={"genres": ["comedy"]}))  # list-valued: any element
    assert by_genre.items.tolist() == [8, 12, 16, 20]  # 4 is in the history
    by_brand = ranker.rank(ALL, context(filters={"brand": "brand1", "price": [10.0, 30.0, 50.0, 70.0]}))
    assert by_brand.items.tolist() == [1, 3, 7]  # 5 has no brand
    assert len(ranker.rank(ALL, context(filters={"category": []}))) == 0
    with pytest.raises(ValueError, match="unknown item column 'colour'"):
        ranker.rank(ALL, context(filters={"colour": ["red"]}))
    for values in ([{"in": "b"}], [["b"]], {"in": "b"}):  # unhashable values: a request error, never a TypeError
        with pytest.raises(RequestError, match="values must be strings, numbers or booleans"):
            ranker.rank(ALL, context(filters={"category": values}))


@pytest.mark.parametrize("column, values, fragment", [
    ("colour", ["red"], "unknown item column"),
    ("category", [["a"]], "values must be strings"),
    ("category", [3], "holds string values, got number"),
    ("price", ["cheap"], "holds number values, got string"),
    ("price", [True], "holds number values, got boolean"),
    ("created_at", ["2024-03-01"], "time column"),
    ("genres", [1], "holds string values"),
])
def test_check_filter_refuses_what_cannot_match(column, values, fragment):
    with pytest.raises(RequestError, match=fragment):
        check_filter(CATALOG, column, values)


def test_check_filter_accepts_values_of_the_column_kind():
    for column, values in (("category", ["a", "z"]), ("price", [10, 20.5]), ("genres", ["drama"]),
                           ("brand", "brand1"), ("category", [])):
        check_filter(CATALOG, column, values)


# ---------------------------------------------------------------------------------------
# diversity
# ---------------------------------------------------------------------------------------


def test_diversity_mixes_categories_where_score_order_would_not():
    assert len(set(CATALOG.columns["category"][TopK().rank(ALL, context()).items])) == 1  # all "c"
    out = Diversity(Diversity.Config(**{"lambda": 0.5})).rank(ALL, context())
    assert len(out) == 5
    assert out.items[0] == 20  # the best item still leads
    assert len(set(CATALOG.columns["category"][out.items])) >= 2
    promoted = [item for item, reasons in zip(out.items, out.reasons) if "diversified" in reasons]
    assert promoted and all(CATALOG.columns["category"][i] != "c" for i in promoted)


def test_diversity_caps_items_per_field_value():
    ranker = Diversity(Diversity.Config(**{"lambda": 1.0, "field": "category", "max_per_value": 2, "k": 6}))
    out = ranker.rank(ALL, context())
    assert CATALOG.columns["category"][out.items].tolist() == ["c", "c", "b", "b", "a", "a"]
    assert out.reasons[2][-1] == "diversified (category)"


def test_diversity_cap_is_a_rule_where_the_catalogue_allows_it():
    ranker = Diversity(Diversity.Config(**{"lambda": 1.0, "field": "category", "max_per_value": 2, "k": 6}))
    only_c = ALL.take(ALL.items >= 15)  # the candidates alone cannot keep the cap
    out = ranker.rank(only_c, context(exclude=np.array([3])))
    assert len(out) == 6 and CATALOG.columns["category"][out.items].tolist().count("c") == 2
    # the two best candidates, then the most popular items of "b" and "a", two each: never an
    # item seen (2, 4, 6) or excluded (3); 16, popular too, is a "c"
    assert out.items.tolist() == [20, 19, 9, 14, 7, 5]
    assert all(r[-2:] == ["popular", "diversified (category)"] for r in out.reasons[2:])
    assert np.all(out.scores[2:] < only_c.scores.min())  # scored below every candidate
    # Where no other item qualifies (a filter on one category), the cap gives way to k items.
    narrow = ranker.rank(only_c, context(filters={"category": ["c"]}))
    assert len(narrow) == 6 and set(CATALOG.columns["category"][narrow.items]) == {"c"}


def test_catalog_codes_single_valued_columns_once_and_leave_list_columns_to_membership():
    codes = CATALOG.codes("brand")
    assert codes is CATALOG.codes("brand")  # computed once per catalogue
    assert codes[0] == codes[5] == -1 and codes[1] == codes[3] != codes[2]  # None → -1
    assert CATALOG.codes("genres") is None  # list-valued
    assert (CATALOG.codes("created_at")[[0, 14]] == -1).all()  # NaT → -1
    groups = list_membership(CATALOG.columns["genres"][[4, 1, 2]])  # [drama, comedy], [drama], []
    assert groups.tolist() == [[True, True], [True, False], [False, False]]


def test_diversity_caps_a_list_valued_field_per_element():
    ranker = Diversity(Diversity.Config(**{"lambda": 1.0, "field": "genres", "max_per_value": 2, "k": 4}))
    out = ranker.rank(ALL, context())
    picked = CATALOG.columns["genres"][out.items]
    assert sum("drama" in g for g in picked) == 2  # capped; genre-less items filled the rest
    assert len(out) == 4


def test_diversity_with_lambda_one_and_no_field_is_score_order():
    out = Diversity(Diversity.Config(**{"lambda": 1.0})).rank(ALL, context(k=7))
    assert out.items.tolist() == TopK().rank(ALL, context(k=7)).items.tolist()
    assert all("diversified" not in r for r in out.reasons)


# ---------------------------------------------------------------------------------------
# freshness
# ---------------------------------------------------------------------------------------


def test_freshness_removes_items_older_than_max_age():
    ranker = Freshness(Freshness.Config(half_life_hours=24, max_age_hours=60))
    out = ranker.rank(ALL, context())
    # Items 15-20 are 0-60 hours old; item 14 is undated and kept.
    assert set(out.items.tolist()) == {14, 15, 16, 17, 18, 19, 20}
    dropped = Freshness(Freshness.Config(max_age_hours=60, drop_undated=True)).rank(ALL, context())
    assert set(dropped.items.tolist()) == {15, 16, 17, 18, 19, 20}


def test_freshness_reorders_by_decay():
    # Equal scores: order by age alone, newest first; the undated item counts as new.
    flat = candidates([3, 18, 20, 10, 14], [1.0] * 5)
    out = Freshness(Freshness.Config(half_life_hours=12)).rank(flat, context())
    assert out.items.tolist() == [20, 14, 18, 10, 3]
    np.testing.assert_allclose(out.scores[:3], [1.0, 1.0, 0.25], rtol=1e-6)
    assert out.reasons[0] == ["model", "fresh: published just now"]
    assert out.reasons[2] == ["model"]  # 24h old: older than one half-life
    # A much better but older item loses to a slightly worse fresh one once decay bites.
    cands = candidates([17, 20, 1], [0.9, 0.8, 0.0])  # 17 is 36h old, 20 is new
    out = Freshness(Freshness.Config(half_life_hours=12)).rank(cands, context())
    assert out.items.tolist() == [20, 17, 1]


def test_freshness_negative_scores_do_not_invert_the_order():
    cands = candidates([20, 19], [-1.0, -3.0])  # same age gap as any other pair
    out = Freshness(Freshness.Config(half_life_hours=1000)).rank(cands, context())
    assert out.items.tolist() == [20, 19]


def test_freshness_now_defaults_to_the_newest_item_and_accepts_aware_times():
    cands = candidates([20, 19, 18])
    without_now = Freshness().rank(cands, context(now=None))
    aware = NEWEST.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    with_now = Freshness().rank(cands, context(now=aware))
    np.testing.assert_allclose(without_now.scores, with_now.scores)
    assert with_now.reasons[1][-1] == "fresh: published 12h ago"


# ---------------------------------------------------------------------------------------
# popularity-fallback
# ---------------------------------------------------------------------------------------


def test_popularity_fallback_answers_unknown_users_with_popular_items():
    out = PopularityFallback().rank(ALL, CONTEXTS["unknown"])
    assert out.items.tolist() == [3, 9, 16, 20, 19]  # never the padding item 0
    np.testing.assert_allclose(out.scores, [1.0, 0.9, 0.8, 0.2, 0.19], rtol=1e-6)
    assert list(out.reasons) == [["popular"]] * 5


def test_popularity_fallback_honours_exclusions_and_filters():
    ctx = context(history=np.zeros(0, dtype=np.int64), history_event_types=[], exclude=np.array([3]),
                  filters={"category": ["b"]}, k=3)
    out = PopularityFallback().rank(Candidates.empty(), ctx)
    assert out.items.tolist() == [9, 14, 13]


def test_popularity_fallback_tops_up_short_lists_and_passes_full_ones_through():
    ranker = PopularityFallback()
    short = candidates([9, 11], [0.3, 0.1])
    out = ranker.rank(short, context(k=5))
    assert out.items.tolist() == [9, 11, 3, 16, 20]  # 9 is already there; history is skipped
    assert list(out.reasons) == [["model"], ["model"]] + [["popular"]] * 3
    assert np.all(out.scores[2:] < 0.1) and np.all(np.diff(out.scores[2:]) <= 0)
    assert ranker.rank(ALL, context(k=5)) is ALL  # nothing to add: the input itself comes back
    no_top_up = PopularityFallback(PopularityFallback.Config(top_up=False))
    assert no_top_up.rank(short, context(k=5)).items.tolist() == [9, 11]
