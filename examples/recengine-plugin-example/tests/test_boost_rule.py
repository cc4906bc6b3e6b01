"""The ``boost-rule`` ranker: recengine's ranker contract, then the rule itself.

The catalogue is ``recengine.testing.make_catalog()``: items 1-7 category "a", 8-14 "b",
15-20 "c"; a higher item index scores higher in ``sample_candidates``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from recengine.components import Candidates, RankContext
from recengine.testing import check_ranker, make_catalog, rank_contexts, sample_candidates
from recengine_gru import BoostRule, BoostRuleConfig

CATALOG = make_catalog()
CATEGORY = CATALOG.columns["category"]
NOW = datetime(2024, 3, 10)


@pytest.mark.parametrize("params", [
    {},
    {"column": "category", "boost": ["a"], "demote": ["c"]},
    {"column": "genres", "boost": ["comedy"], "weight": 2.0},
    {"column": "brand", "user_attribute": "country", "demote": ["brand0"]},
    {"boost": ["b"], "active_from": "2024-01-01T00:00:00", "active_until": "2024-02-01T00:00:00+02:00"},
])
def test_keeps_the_ranker_contract(params: dict) -> None:
    check_ranker(BoostRule, name="boost-rule", params=params)


def rank(candidates: Candidates | None = None, **params: object) -> Candidates:
    context = RankContext(user_id="u", k=5, catalog=CATALOG, history=np.zeros(0, dtype=np.int64), now=NOW,
                          user_attributes={"favourite": "b"})
    return BoostRule(BoostRuleConfig(**params)).rank(
        candidates if candidates is not None else sample_candidates(CATALOG), context)


def test_without_a_rule_the_candidates_come_back_as_they_are() -> None:
    given = sample_candidates(CATALOG)
    assert rank(given) is given
    assert rank(given, boost=["no such category"]) is given


def test_boost_and_demote_move_items_by_a_share_of_the_score_range() -> None:
    out = rank(boost=["a"], demote=["c"], weight=1.0)
    categories = CATEGORY[out.items].tolist()
    assert categories == sorted(categories)  # every "a" above every "b" above every "c"
    assert out.reasons[0] == ["model", "boosted: category a"]
    assert out.reasons[-1] == ["model", "demoted: category c"]
    assert np.all(np.diff(out.scores) <= 0)
    # weight 0.5 (of a range of 2.0) lifts item 6 ("a", score ≈ -0.47) above item 10 ("b", ≈ -0.05)
    half = rank(boost=["a"]).items.tolist()
    assert half.index(6) < half.index(10)


def test_promotes_what_matches_the_requesting_users_attribute() -> None:
    out = rank(user_attribute="favourite", weight=1.0)
    assert set(CATEGORY[out.items[:7]]) == {"b"}
    assert out.reasons[0][-1] == "boosted: category matches your favourite"


def test_list_valued_columns_match_on_any_element() -> None:
    out = rank(column="genres", boost=["comedy"], weight=5.0)
    assert sorted(out.items[:5].tolist()) == [4, 8, 12, 16, 20]
    assert out.reasons[0][-1] == "boosted: genres comedy"


def test_a_tuple_cell_is_one_value_as_for_the_engines_filters() -> None:
    """A tuple cell ("a", "b") is one value (recengine.components.LIST_VALUE_TYPES): the rule
    matches it as a whole, never its parts, exactly as a request filter does."""
    catalog = make_catalog(4)
    catalog.columns["pair"] = np.array([None, ("a", "b"), ["a", "x"], "a", None], dtype=object)
    context = RankContext(user_id="u", k=4, catalog=catalog, history=np.zeros(0, dtype=np.int64))
    given = Candidates(np.array([1, 2, 3, 4]), np.array([4.0, 3.0, 2.0, 1.0], dtype=np.float32),
                       [[] for _ in range(4)])
    by_part = BoostRule(BoostRuleConfig(column="pair", boost=["b"])).rank(given, context)
    assert by_part is given  # "b" is inside the tuple but is not its value
    out = BoostRule(BoostRuleConfig(column="pair", boost=["a"], weight=1.0)).rank(given, context)
    assert out.items.tolist() == [2, 3, 1, 4]  # the list cell and the scalar "a" are lifted by 3.0
    np.testing.assert_allclose(out.scores, [6.0, 5.0, 4.0, 1.0])
    assert list(out.reasons) == [["boosted: pair a"]] * 2 + [[], []]
    whole = BoostRule(BoostRuleConfig(column="pair", user_attribute="pair", weight=1.0))
    context.user_attributes = {"pair": ("a", "b")}  # a tuple attribute is one value too
    assert whole.rank(given, context).items.tolist() == [1, 2, 3, 4]
    assert whole.rank(given, context).reasons[0] == ["boosted: pair matches your pair"]


def test_applies_only_inside_its_time_window() -> None:
    window = {"boost": ["a"], "weight": 1.0, "active_until": NOW - timedelta(days=1)}
    assert rank(**window).items.tolist() == sample_candidates(CATALOG).items.tolist()  # the campaign is over
    aware = {"boost": ["a"], "weight": 1.0, "active_from": (NOW - timedelta(hours=1)).replace(tzinfo=UTC)}
    assert CATEGORY[rank(**aware).items[0]] == "a"


def test_unknown_column_fails_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown item column 'colour'; known columns: brand, category"):
        rank(column="colour")
    assert len(rank(Candidates.empty(), column="colour")) == 0


@pytest.mark.parametrize("params", [
    {"weight": -1}, {"boost": "a"}, {"rule": "x"},
    {"active_from": "2024-02-01T00:00:00", "active_until": "2024-01-01T00:00:00"},
])
def test_config_rejects_bad_parameters(params: dict) -> None:
    with pytest.raises(ValidationError):
        BoostRuleConfig(**params)


def test_known_user_context_from_engine_testing_is_left_valid() -> None:
    context = rank_contexts()["known"]
    out = BoostRule(BoostRuleConfig(boost=["a"])).rank(sample_candidates(CATALOG), context)
    assert len(out) == CATALOG.size


def test_the_rule_reads_the_request_time_only_with_a_window() -> None:
    assert not BoostRule(BoostRuleConfig(column="category", boost=["a"])).reads_request_time
    windowed = BoostRuleConfig(column="category", boost=["a"], active_from="2024-01-01T00:00:00Z")
    assert BoostRule(windowed).reads_request_time
