"""Issue 19: search events — what users type — stored apart from item events, embedded by the
item text model, pooled point-in-time into the user tower, and cited in reasons."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from recengine.cli import cli
from recengine.config import PipelineConfig, validate_components
from recengine.errors import ConfigError, DataError
from recengine.feature_store import FeatureStore
from recengine.feature_store.errors import IngestError
from recengine.feature_store.live_log import LiveBatch
from recengine.live_overlay import LiveOverlay
from recengine.plugins.domains import ecommerce
from recengine.recommender import Recommender
from recengine.searches import SearchLog, pool_recent

MIXED = pl.DataFrame({
    "user_id": ["u1", "u1", "u2", "u1"],
    "item_id": ["i1", None, "i2", ""],
    "query": [None, "red running shoes", None, "  trail tent "],
    "event_type": ["view", "search", None, None],
    "ts": ["2024-01-01T10:00:00Z", "2024-01-01T09:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"],
})


def _store(path: Path) -> FeatureStore:
    store = FeatureStore(path)
    store.ingest(pl.DataFrame({"user_id": ["u1", "u2"]}), "users")
    store.ingest(pl.DataFrame({"item_id": ["i1", "i2"], "title": ["Red running shoes", "Blue kettle"]}), "items")
    return store


def test_search_rows_of_an_events_source_go_to_the_searches_table(store_path: Path) -> None:
    with _store(store_path) as store:
        result = store.ingest(MIXED, "events")
        assert (result.rows_read, result.rows_added) == (4, 4)
        assert store.stats()["events"] == 2 and store.stats()["searches"] == 2
        searches = store.searches()
        assert searches["query"].to_list() == ["red running shoes", "trail tent"]  # trimmed, in time order
        assert searches["ts"].to_list() == [datetime(2024, 1, 1, 9), datetime(2024, 1, 3)]
        assert store.ingest(MIXED, "events").rows_added == 0  # the same file again adds nothing
        # a file of searches alone (no item_id column) is recognised as events
        only = pl.DataFrame({"user_id": ["u2"], "query": ["blue kettle"], "ts": ["2024-01-04"]})
        assert store.ingest(only).rows_added == 1
        assert store.searches(["u2"])["query"].to_list() == ["blue kettle"]
        assert store.sql("SELECT count(*) AS n FROM events WHERE item_id IS NULL")["n"][0] == 0


@pytest.mark.parametrize(("row", "column", "problem"), [
    ({"item_id": "i1", "query": "shoes"}, "item_id", "names an item"),
    ({"item_id": None, "query": None, "event_type": "search"}, "query", "has no query text"),
    ({"item_id": None, "query": "shoes", "event_type": "view"}, "event_type", "has another event type"),
    ({"item_id": None, "query": None}, "item_id", "required value is empty"),
])
def test_a_bad_search_row_is_refused_by_row_and_column_and_nothing_is_written(
        store_path: Path, row: dict[str, str | None], column: str, problem: str) -> None:
    good = {"user_id": "u1", "item_id": "i2", "query": None, "event_type": "view", "ts": "2024-01-01"}
    frame = pl.DataFrame([good, {**good, "event_type": None, **row}], schema={k: pl.String for k in good})
    with _store(store_path) as store:
        store.ingest(MIXED, "events")
        before = store.stats()
        with pytest.raises(IngestError, match=problem) as caught:
            store.ingest(frame, "events")
        assert (caught.value.row, caught.value.column) == (2, column)
        after = store.stats()
        assert (after["events"], after["searches"]) == (before["events"], before["searches"])


def test_searches_of_unknown_users_are_refused_unless_created(store_path: Path) -> None:
    frame = pl.DataFrame({"user_id": ["stranger"], "query": ["tent"], "ts": ["2024-01-01"]})
    with _store(store_path) as store:
        with pytest.raises(IngestError, match="users not in the store"):
            store.ingest(frame, "events")
        assert store.stats()["searches"] == 0
        assert store.ingest(frame, "events", create_missing=True).created_missing == 1


def _log(last: int = 2, max_age: int | None = None) -> SearchLog:
    # user 1 searched "a" at t=10, "b" at 20, "c" at 30; user 3 "d" at 5; vectors are one-hot
    vectors = np.eye(4, dtype=np.float32)
    return SearchLog(np.array([1, 1, 1, 3]), np.array([10, 20, 30, 5]), np.array([0, 1, 2, 3]),
                     ["a", "b", "c", "d"], vectors, last, max_age)


def test_pooling_counts_only_the_last_searches_strictly_before_the_prediction() -> None:
    log = _log(last=2)
    pooled = log.pool(np.array([1, 1, 1, 1, 2, 3, 0]), np.array([10, 11, 25, 100, 100, 6, 100]))
    expected = np.array([[0, 0, 0, 0],  # at t=10 the search made at 10 does not count yet
                         [1, 0, 0, 0],
                         [.5, .5, 0, 0],
                         [0, .5, .5, 0],  # the last two only
                         [0, 0, 0, 0],  # a user without searches
                         [0, 0, 0, 1],
                         [0, 0, 0, 0]], dtype=np.float32)  # unknown user (index 0)
    np.testing.assert_allclose(pooled, expected)
    assert log.recent(1, 100) == [("c", 30), ("b", 20)]
    aged = _log(last=5, max_age=25)  # at 40: the searches at 20 and 30, not the one at 10
    np.testing.assert_allclose(aged.pool(np.array([1]), np.array([40])), [[0, .5, .5, 0]])


def test_serving_pools_as_training_does() -> None:
    log = _log(last=2, max_age=25)
    queries, times = log.of_user(1)
    for at in (5, 10, 21, 31, 50, 1000):  # a request counts searches up to its own second; training strictly before
        served = pool_recent(queries, times, log.vector_lookup(), at - 1, log.dim, log.last, log.max_age_seconds - 1)
        np.testing.assert_allclose(served.vector, log.pool(np.array([1]), np.array([at]))[0])
        assert served.queries == [q for q, _ in log.recent(1, at)]
    assert pool_recent(queries, times, log.vector_lookup(), 30, log.dim, 1, None).queries == ["c"]
    without_c = {q: v for q, v in log.vector_lookup().items() if q != "c"}  # a query with no vector is skipped
    assert pool_recent(queries, times, without_c, 30, log.dim, 2, None).queries == ["b"]


def test_the_ecommerce_generator_searches_for_products_before_viewing_them() -> None:
    data = ecommerce.generate(400, 300, 12_000, 5)
    again = ecommerce.generate(400, 300, 12_000, 5)
    assert data.searches is not None and again.searches is not None
    assert data.searches.equals(again.searches)  # seeded
    searches = data.searches
    views = data.events.filter(pl.col("event_type") == "view").sort("ts")
    assert 0.5 * ecommerce.SEARCH_RATE < searches.height / views.height < 1.5 * ecommerce.SEARCH_RATE
    assert searches["ts"].is_sorted()
    # most searches name the product the shopper views next (the rest are noise)
    titles = dict(zip(data.items["item_id"].to_list(), data.items["title"].to_list()))
    joined = searches.join_asof(views.rename({"ts": "view_ts"}), left_on="ts", right_on="view_ts",
                                by="user_id", strategy="forward")
    hits = [query.split()[0] in titles[item] and query.split()[-1] in titles[item]
            for query, item in zip(joined["query"].to_list(), joined["item_id"].to_list()) if item is not None]
    assert 0.6 < float(np.mean(hits)) < 0.95


def test_model_searches_needs_a_tower_that_reads_it_and_pairs_training() -> None:
    base = {"model.item_encoder": {"name": "dense", "params": {"use_features": True}},
            "model.searches": {"vectors": "text"}}
    with pytest.raises(ConfigError, match="does not read with these parameters"):
        validate_components(PipelineConfig(name="x").with_overrides({**base, "model.user_encoder": {"name": "hstu"}}))
    with pytest.raises(ConfigError, match="does not read"):
        validate_components(PipelineConfig(name="x").with_overrides(
            {**base, "model.user_encoder": {"name": "dense", "params": {"use_features": False}}}))
    with pytest.raises(ConfigError, match="pairs mode"):
        validate_components(PipelineConfig(name="x").with_overrides(
            {**base, "model.user_encoder": {"name": "dense"}, "train.mode": "sequence"}))
    validate_components(PipelineConfig(name="x").with_overrides({**base, "model.user_encoder": {"name": "dense"}}))


CONFIG = """
name = "searching"
domain = "ecommerce"
[model]
item_vectors = ["text"]
[model.user_encoder]
name = "dense"
params = { use_history = true }
[model.item_encoder]
name = "dense"
params = { use_features = true }
[model.searches]
vectors = "text"
last = 3
max_age_days = 3650
[train]
mode = "pairs"
epochs = 8
lr = 0.005
"""


def test_cli_trains_on_searches_and_cites_them_in_reasons(tmp_path: Path) -> None:
    runner = CliRunner()
    data, store, models = tmp_path / "data", str(tmp_path / "shop.duckdb"), str(tmp_path / "models")
    config = tmp_path / "searching.toml"
    config.write_text(CONFIG)

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, (args, result.output)
        return result.output

    assert "searches)" in run("data", "generate", "--domain", "ecommerce", "--users", "600", "--items", "200",
                              "--events", "15000", "--seed", "2", "--out", str(data))
    run("store", "init", "--domain", "ecommerce", "--store", store)
    run("store", "ingest", str(data), "--store", store)
    early = runner.invoke(cli, ["train", "--store", store, "--models", models, "--config", str(config)])
    assert early.exit_code == 1 and "recengine vectors build" in early.output  # no vector set yet
    assert "search queries into the same space" in run("vectors", "build", "--store", store)
    with FeatureStore(store, read_only=True) as opened:
        assert not opened.unembedded_queries("text")
    run("train", "--store", store, "--models", models, "--config", str(config))

    # a brand-new shopper who only searched, for what shoppers here search most ("<adjective> <noun>"):
    # the tower reads the search (no popularity fallback), the list follows it, the reasons cite it
    searched = pl.read_parquet(data / "searches.parquet")["query"]
    query = next(q for q in searched.value_counts(sort=True)["query"].to_list() if q.split()[0][0].islower())
    noun = query.split(" ", 1)[1]
    with FeatureStore(store) as opened:
        opened.ingest(pl.DataFrame({"user_id": ["newcomer"], "query": [query], "ts": [datetime(2026, 11, 30)]}),
                      "events", create_missing=True)
        opened.publish()
    output = run("recommend", "--user", "newcomer", "-k", "5", "--models", models, "--json")
    recommended = json.loads(output)
    assert len(recommended) == 5
    assert not any("popular" in " ".join(r["reasons"]) for r in recommended)  # scored, not the fallback
    assert noun in recommended[0]["title"], (query, recommended)
    cited = [r for r in recommended if f'because you searched for "{query}"' in r["reasons"]]
    assert cited and all(noun in r["title"] for r in cited), (query, recommended)

    # serving: a search posted after the snapshot (the HTTP path) reaches the replica's overlay at once,
    # and a query nobody typed before is embedded on the fly by the set's text model
    recommender = Recommender.load("searching", models)
    recommender.live = LiveOverlay(recommender.online.data.live_seq if recommender.online else 0)
    fresh = f"{query.split()[0]} {noun} for my sister"
    with FeatureStore(store) as opened:
        assert fresh not in opened.read_query_vectors("text")[0]
        changes: list = []
        opened.append_live([LiveBatch("events", [{"user_id": "walk-in", "query": fresh}])], logged=changes)
    assert recommender.recommend("walk-in", 5).fallback  # the overlay has not seen it yet: nothing to go on
    recommender.live.apply(changes)
    served = recommender.recommend("walk-in", 5)
    assert not served.fallback and noun in served[0].title, served
    assert any(f'because you searched for "{fresh}"' in r.reasons for r in served)
    # items posted while serving (no vector in the set yet) leave the searched-for items and reasons as they were
    with FeatureStore(store, read_only=True) as opened:
        template = opened.latest("items").head(1)
    for n in range(3):
        assert recommender.add_items(template.with_columns(pl.lit(f"posted-{n}").alias("item_id"))) == 1
        after = recommender.recommend("walk-in", 5)
        assert [r.item_id for r in after] == [r.item_id for r in served]
        assert [r.reasons for r in after] == [r.reasons for r in served]

    # re-evaluating on the store pools its searches now, the never-embedded query embedded on the way
    with_searches = json.loads((Path(models) / "searching" / "1" / "metrics.json").read_text())["test"]["ndcg@10"]
    evaluated = tmp_path / "evaluated.json"
    run("evaluate", "searching", "--store", store, "--models", models, "--out", str(evaluated))
    metrics = json.loads(evaluated.read_text())
    assert metrics["test"]["ndcg@10"] == pytest.approx(with_searches, abs=1e-6)  # the test users' searches as trained


def test_training_refuses_queries_the_vector_set_lacks(tmp_path: Path) -> None:
    from recengine.dataset import load_search_log
    from recengine.training_data import IdMap

    with _store(tmp_path / "s.duckdb") as store:
        store.ingest(MIXED, "events")
        store.write_vectors("text", ["i1", "i2"], np.eye(2, dtype=np.float32))
        config = PipelineConfig(name="x").with_overrides({"model.searches": {"vectors": "text"}})
        with pytest.raises(DataError, match=r"2 searched queries have no vector in set 'text'"):
            load_search_log(store, config, IdMap(["u1", "u2"]))
        store.write_query_vectors("text", ["red running shoes", "trail tent"], np.eye(2, dtype=np.float32))
        log = load_search_log(store, config, IdMap(["u1", "u2"]))
        assert log is not None and len(log) == 2 and log.dim == 2
        with pytest.raises(IngestError, match="one 2-d row per query"):
            store.write_query_vectors("text", ["x"], np.ones((1, 3), dtype=np.float32))
