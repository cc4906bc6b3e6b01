"""Issue 19: the e-commerce generator writes its catalogue in Chinese (``--language zh``), the same
catalogue as the English one of that seed, and the product runs end to end on it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from recengine.cli import cli
from recengine.errors import ConfigError
from recengine.plugin_manager import get_plugin_manager
from recengine.plugins.domains import ecommerce
from recengine.plugins.domains.ecommerce_zh import CATEGORIES_ZH

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_chinese_catalogue_is_the_english_one_translated() -> None:
    english = ecommerce.generate(300, 250, 6_000, 11)
    chinese = ecommerce.generate(300, 250, 6_000, 11, language="zh")
    assert_frame_equal(english.events, chinese.events)
    assert_frame_equal(english.users, chinese.users)
    same = ["item_id", "created_at", "price"]
    assert_frame_equal(english.items.select(same), chinese.items.select(same))
    pairs = set(zip(english.items["category"].to_list(), chinese.items["category"].to_list()))
    assert pairs == {(name, CATEGORIES_ZH[name][0]) for name, _ in pairs}  # one Chinese name per category
    assert all(CJK.search(title) for title in chinese.items["title"].to_list())
    assert not any(CJK.search(title) for title in english.items["title"].to_list())
    # the same product words, translated: the English noun's Chinese counterpart is in the title
    for en_title, zh_title, category in zip(english.items["title"].to_list()[:50], chinese.items["title"].to_list(),
                                            english.items["category"].to_list()):
        en_nouns, zh_nouns = ecommerce.CATEGORIES[category][1], CATEGORIES_ZH[category][1]
        noun = next(i for i, word in sorted(enumerate(en_nouns), key=lambda p: -len(p[1])) if f" {word} " in en_title)
        assert zh_nouns[noun] in zh_title, (en_title, zh_title)


def test_unknown_language_is_refused_with_the_ones_there_are() -> None:
    with pytest.raises(ConfigError, match="writes en, zh, not 'fr'"):
        ecommerce.generate(10, 10, 100, 0, language="fr")
    with pytest.raises(ConfigError, match="other languages: zh"):
        get_plugin_manager().domain("ecommerce").generator("fr")
    with pytest.raises(ConfigError, match="none besides its own"):
        get_plugin_manager().domain("news").generator("zh")


def test_cli_generates_ingests_trains_and_recommends_a_chinese_shop(tmp_path: Path) -> None:
    runner = CliRunner()
    data, store, models = str(tmp_path / "data"), str(tmp_path / "shop.duckdb"), str(tmp_path / "models")
    steps = [
        ["data", "generate", "--domain", "ecommerce", "--language", "zh", "--users", "300", "--items", "200",
         "--events", "6000", "--seed", "3", "--out", data],
        ["store", "init", "--domain", "ecommerce", "--store", store],
        ["store", "ingest", data, "--store", store],
        ["train", "--store", store, "--models", models, "--domain", "ecommerce", "--name", "zh-shop",
         "--epochs", "1"],
    ]
    for step in steps:
        result = runner.invoke(cli, step)
        assert result.exit_code == 0, (step, result.output)
    items = pl.read_parquet(Path(data) / "items.parquet")
    user = pl.read_parquet(Path(data) / "events.parquet")["user_id"][0]
    result = runner.invoke(cli, ["recommend", "--user", user, "-k", "5", "--models", models, "--json"])
    assert result.exit_code == 0, result.output
    recommended = json.loads(result.output)
    titles = dict(zip(items["item_id"].to_list(), items["title"].to_list()))
    assert len(recommended) == 5
    assert all(rec["title"] == titles[rec["item_id"]] and CJK.search(rec["title"]) for rec in recommended)
    # no snapshot published: the bundle's histories keep no event types, so the preset's exclude-seen
    # (purchases) hides every item the user had in training rather than failing
    events = pl.read_parquet(Path(data) / "events.parquet").filter(pl.col("user_id") == user).sort("ts")
    trained_on = set(events["item_id"].to_list()[:-2])  # P-seq: the last two are valid and test
    assert not trained_on & {rec["item_id"] for rec in recommended}
    bad = runner.invoke(cli, ["data", "generate", "--domain", "ecommerce", "--language", "xx", "--out", data])
    assert bad.exit_code == 1 and "generates no 'xx' text" in bad.output
