"""Third-party plugins end to end: broken plugins are reported and contained, loading order
does not matter, ``recengine plugins install/uninstall/check``, and the example package
(``examples/recengine-plugin-example``, distribution ``recengine-gru``) installed for real:
listed, trained with ``gru``, evaluated, recommended from and served like a built-in, and
hidden by ``RECENGINE_LOAD_PLUGINS=``."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import math
import os
import shutil
import site
import subprocess
import sys
import types
from pathlib import Path

import click
import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

import recengine
from recengine import Domain, hookimpl
from recengine.cli import cli, plugins_cmd
from recengine.components import Candidates, Encoded, Interactor, Ranker
from recengine.plugin_manager import PluginManager, UnknownComponentError, get_plugin_manager, reset_plugin_manager
from recengine.plugins.domains import ecommerce
from recengine.testing import (
    check_encoder,
    check_interactor,
    check_plugin,
    check_ranker,
    make_catalog,
    rank_contexts,
    sample_candidates,
)
from tests.conftest import generated_shop

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "recengine-plugin-example"
EXAMPLE_DIST, EXAMPLE_PLUGIN = "recengine-gru", "recengine_gru"


# ---------------------------------------------------------------------------------------
# fake installed distributions (dist-info with an entry point) on sys.path
# ---------------------------------------------------------------------------------------


def install_fake(root: Path, dist: str, module: str, source: str, version: str = "1.0.0") -> None:
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[recengine]\n{module} = {module}\n")


BROKEN_IMPORT = "import acme_missing_dependency  # noqa\n"

WIDE_ENCODER = '''
import torch
from recengine import hookimpl
from recengine.components import Encoded, Encoder


class Wide(Encoder):
    """Says its vectors are dim wide, returns dim + 1."""

    def __init__(self, context, config=None):
        super().__init__(context, config)
        self.ids = torch.nn.Embedding(context.features.num_ids + 1, context.dim + 1)

    def forward(self, batch):
        return Encoded(self.ids(batch["ids"]))


@hookimpl
def register_encoders(register):
    register("wide", Wide)
'''

STEAL_TOPK = '''
from recengine import hookimpl
from recengine.components import Ranker


class MyTopK(Ranker):
    def rank(self, candidates, context):
        return candidates.take(list(range(len(candidates)))[: context.k])


class Fine(Ranker):
    def rank(self, candidates, context):
        return candidates.take(list(range(len(candidates))))


@hookimpl
def register_rankers(register):
    register("fine", Fine)
    register("topk", MyTopK)
'''


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Three broken third-party plugins installed on sys.path, only for this test."""
    install_fake(tmp_path, "acme-broken", "acme_broken", BROKEN_IMPORT)
    install_fake(tmp_path, "acme-wide", "acme_wide", WIDE_ENCODER)
    install_fake(tmp_path, "acme-steal", "acme_steal", STEAL_TOPK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("RECENGINE_LOAD_PLUGINS", raising=False)
    reset_plugin_manager()
    yield tmp_path
    for module in ("acme_broken", "acme_wide", "acme_steal"):
        sys.modules.pop(module, None)
    reset_plugin_manager()


def loaded(allowed: set[str] | None = None) -> PluginManager:
    manager = PluginManager()
    manager.load_builtins()
    manager.load_entry_points(allowed)
    return manager


def by_name(manager: PluginManager) -> dict[str, object]:
    return {info.name: info for info in manager.plugins}


# ---------------------------------------------------------------------------------------
# safety: each broken plugin is reported (which plugin, what is wrong), the rest works
# ---------------------------------------------------------------------------------------


def test_plugin_raising_on_import_is_reported_and_contained(fake_site: Path) -> None:
    manager = loaded()
    broken = by_name(manager)["acme_broken"]
    assert broken.distribution == "acme-broken" and broken.version == "1.0.0"
    assert broken.error.startswith("ModuleNotFoundError: No module named 'acme_missing_dependency'")
    assert "acme_broken.py:1" in broken.error  # where it failed
    assert broken.components == {}
    assert "transformer" in manager.names("encoders") and "wide" in manager.names("encoders")


def test_duplicate_name_is_reported_and_nothing_of_that_plugin_registers(fake_site: Path) -> None:
    manager = loaded()
    steal = by_name(manager)["acme_steal"]
    assert ("DuplicateComponentError: ranker 'topk' is already registered by "
            "recengine.plugins.rankers.filters") in steal.error
    assert "fine" not in manager.names("rankers")  # all or nothing: its other ranker is not half-registered
    assert manager.registry.components["rankers"]["topk"][1] == "recengine.plugins.rankers.filters"


def test_wrong_shape_encoder_is_named_with_expected_and_actual_shapes(fake_site: Path) -> None:
    manager = loaded()
    assert by_name(manager)["acme_wide"].error is None  # registration cannot know; the checks can
    with pytest.raises(AssertionError) as failure:
        check_plugin(manager, "acme_wide")
    message = str(failure.value)
    assert "encoder 'wide' (plugin acme_wide, acme_wide.Wide)" in message
    assert "vector shape: expected (0, 16) ([batch, output_dim]) for a batch of 0, got (0, 17)" in message
    with pytest.raises(AssertionError, match=r"expected \(5, 16\).*got \(5, 17\)"):
        _check_batch_of_five(manager)


def _check_batch_of_five(manager: PluginManager) -> None:
    """The same wrong width reported on a non-empty batch (an encoder right on empty input)."""
    wide = manager.get("encoders", "wide")

    class RightWhenEmpty(wide):  # type: ignore[misc, valid-type]
        def forward(self, batch):  # type: ignore[no-untyped-def]
            out = super().forward(batch)
            return Encoded(out.vector[:, :-1]) if batch["ids"].shape[0] < 2 else out

    check_encoder(RightWhenEmpty, name="wide", plugin="acme_wide")


def test_the_cli_survives_broken_plugins_and_reports_them(fake_site: Path) -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, ["plugins", "--json"])
    assert listing.exit_code == 0, listing.output
    rows = {row["name"]: row for row in json.loads(listing.output)}
    assert rows["acme_broken"]["error"].startswith("ModuleNotFoundError")
    assert rows["acme_steal"]["error"].startswith("DuplicateComponentError")
    assert rows["acme_wide"]["error"] is None and rows["acme_wide"]["components"] == {"encoders": ["wide"]}
    table = runner.invoke(cli, ["plugins"])
    assert table.exit_code == 0 and "failed" in table.output and "acme_broken" in table.output
    checked = runner.invoke(cli, ["plugins", "check", "--json"])
    assert checked.exit_code == 1
    results = {(row["plugin"], row["component"]): row for row in json.loads(checked.output)}
    assert "failed to load: ModuleNotFoundError" in results[("acme_broken", "-")]["error"]
    assert "got (0, 17)" in results[("acme_wide", "wide")]["error"]
    assert not any(plugin.startswith("recengine.plugins.") for plugin, _ in results)  # built-ins only with --all
    unknown = runner.invoke(cli, ["plugins", "check", "acme_nothing"])
    assert unknown.exit_code == 1 and "no loaded plugin named 'acme_nothing'" in unknown.output


def test_a_failing_register_commands_leaves_the_cli_working() -> None:
    module = types.ModuleType("acme_bad_cli")

    @hookimpl
    def register_commands(cli):  # type: ignore[no-untyped-def]
        raise RuntimeError("cannot add my command")

    module.register_commands = register_commands
    manager = PluginManager()
    manager.load_builtins()
    info = manager.load_plugin(module, name="acme_bad_cli")
    group = click.Group("recengine", commands=dict(cli.commands))
    manager.add_commands(group)
    assert "RuntimeError: cannot add my command" in info.error
    assert set(group.commands) == set(cli.commands)


def test_check_ranker_names_a_ranker_that_mutates_its_input() -> None:
    class Appender(Ranker):
        def rank(self, candidates, context):  # type: ignore[no-untyped-def]
            for reasons in candidates.reasons:
                reasons.append("mine")
            return candidates

    expected = r"ranker 'appender' \(plugin acme, .*Appender\): rank mutated its input reasons"
    with pytest.raises(AssertionError, match=expected):
        check_ranker(Appender, name="appender", plugin="acme")


def test_check_interactor_catches_a_false_uses_sequence_claim() -> None:
    """An interactor that says it scores from the vector alone but reads the sequence
    would be fed cached user vectors by serving: the contract check refuses it."""
    from recengine.plugins.interactors.dot import DotInteractor

    class Pooled(DotInteractor):
        @staticmethod
        def _pooled(user: Encoded) -> Encoded:
            return user if user.sequence is None else Encoded(user.vector + user.sequence.sum(1))

        def score(self, user, items):  # type: ignore[no-untyped-def]
            return super().score(self._pooled(user), items)

        def score_all(self, user, item_matrix):  # type: ignore[no-untyped-def]
            return super().score_all(self._pooled(user), item_matrix)

    with pytest.raises(AssertionError, match="uses_sequence is False but its scores change with user.sequence"):
        check_interactor(Pooled, name="pooled", plugin="acme")


# ---------------------------------------------------------------------------------------
# loading order does not change the registry or the recommendations
# ---------------------------------------------------------------------------------------


class Promote(Ranker):
    """Moves category ``a`` items up by one score unit."""

    def rank(self, candidates, context):  # type: ignore[no-untyped-def]
        lift = (context.catalog.columns["category"][candidates.items] == "a").astype(np.float32)
        scores = candidates.scores + lift
        order = np.argsort(-scores, kind="stable")
        return Candidates(candidates.items[order], scores[order], [candidates.reasons[i] + ["a"] if lift[i] else
                                                                   candidates.reasons[i] for i in order.tolist()])


class Halve(Interactor):
    def score(self, user, items):  # type: ignore[no-untyped-def]
        if items.dim() == 2:
            return (user.vector * items).sum(-1) / 2
        return (items @ user.vector.unsqueeze(-1)).squeeze(-1) / 2

    def score_all(self, user, item_matrix):  # type: ignore[no-untyped-def]
        return user.vector @ item_matrix.T / 2


SHOP_A = Domain(name="shop-a", description="A test domain.", store_schema=ecommerce.SCHEMA)


def plugin_one() -> types.ModuleType:
    module = types.ModuleType("acme_one")

    @hookimpl
    def register_rankers(register):  # type: ignore[no-untyped-def]
        register("promote-a", Promote)

    @hookimpl
    def register_interactors(register):  # type: ignore[no-untyped-def]
        register("halve", Halve)

    @hookimpl
    def register_domains(register):  # type: ignore[no-untyped-def]
        register(SHOP_A)

    module.register_rankers, module.register_interactors, module.register_domains = (
        register_rankers, register_interactors, register_domains)
    return module


@pytest.fixture
def example_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The example plugin's module: installed, or imported from its source tree."""
    try:
        import recengine_gru
    except ImportError:
        monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
        import recengine_gru
    return recengine_gru


def _registry(manager: PluginManager) -> dict:
    return {family: {name: owner for name, (_, owner) in entries.items()}
            for family, entries in manager.registry.components.items()}


def test_loading_order_does_not_change_registry_or_results(example_module: types.ModuleType) -> None:
    managers = []
    for order in ((plugin_one(), example_module), (example_module, plugin_one())):
        manager = PluginManager()
        manager.load_builtins()
        for module in order:
            info = manager.load_plugin(module, name=module.__name__)
            assert info.error is None, info.error
        managers.append(manager)
    first, second = managers
    assert _registry(first) == _registry(second)
    assert {"promote-a", "boost-rule"} <= set(first.names("rankers"))
    catalog = make_catalog()
    context = rank_contexts(catalog)["known"]
    outputs = []
    for manager in managers:
        chain = [manager.get("rankers", "boost-rule")(manager.get("rankers", "boost-rule").Config(
                     column="category", demote=["c"])),
                 manager.get("rankers", "promote-a")(), manager.get("rankers", "exclude-seen")(),
                 manager.get("rankers", "topk")()]
        candidates = sample_candidates(catalog)
        for ranker in chain:
            candidates = ranker.rank(candidates, context)
        outputs.append(candidates)
    assert outputs[0].items.tolist() == outputs[1].items.tolist() and len(outputs[0]) == context.k
    assert outputs[0].reasons == outputs[1].reasons and np.array_equal(outputs[0].scores, outputs[1].scores)
    assert first.domain("shop-a") is SHOP_A


def test_third_party_encoders_and_interactors_build_into_a_model_in_any_order(
        example_module: types.ModuleType) -> None:
    from recengine.components import EncoderContext, InteractorContext
    from recengine.testing import default_features, encoder_batch

    scores = []
    for order in ((plugin_one(), example_module), (example_module, plugin_one())):
        manager = PluginManager()
        manager.load_builtins()
        for module in order:
            manager.load_plugin(module, name=module.__name__)
        torch.manual_seed(0)
        table = torch.nn.Embedding(31, 16)
        gru = manager.get("encoders", "gru")
        encoder = gru(EncoderContext("user", 16, default_features("user"), 30, 6, embed_items=table),
                      gru.Config()).eval()
        halve = manager.get("interactors", "halve")(InteractorContext(16))
        with torch.no_grad():
            scores.append(halve.score_all(encoder(encoder_batch(4, default_features("user"))), table.weight))
    assert torch.equal(scores[0], scores[1])


# ---------------------------------------------------------------------------------------
# recengine plugins install / uninstall (pip stubbed: arguments, constraints, failures)
# ---------------------------------------------------------------------------------------


class FakePip:
    def __init__(self, returncode: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.returncode = returncode

    def __call__(self, command, check=False):  # type: ignore[no-untyped-def]
        self.calls.append(list(command))
        return subprocess.CompletedProcess(command, self.returncode)


@pytest.fixture
def fake_pip(monkeypatch: pytest.MonkeyPatch) -> FakePip:
    pip = FakePip()
    monkeypatch.setattr(plugins_cmd.subprocess, "run", pip)
    return pip


def test_install_runs_pip_in_recengines_environment_with_its_constraints(fake_pip: FakePip) -> None:
    result = CliRunner().invoke(cli, ["plugins", "install", "--no-deps", "--no-build-isolation", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    constraints = Path(recengine.__file__).resolve().parents[1] / "constraints.txt"
    expected = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    if constraints.is_file():
        expected += ["--constraint", str(constraints)]
    assert fake_pip.calls == [expected + [str(EXAMPLE)]]
    assert "recengine plugins" in result.output
    editable = CliRunner().invoke(
        cli, ["plugins", "install", "-U", "--no-constraints", "-e", str(EXAMPLE), "extra-pkg"])
    assert editable.exit_code == 0, editable.output
    assert fake_pip.calls[-1] == [sys.executable, "-m", "pip", "install", "--upgrade", "--editable", str(EXAMPLE),
                                  "extra-pkg"]


def test_install_failure_is_a_clear_error_with_exit_status_1(fake_pip: FakePip) -> None:
    fake_pip.returncode = 1
    result = CliRunner().invoke(cli, ["plugins", "install", "recengine-no-such-plugin"])
    assert result.exit_code == 1
    assert "install failed: pip exited with status 1" in result.output
    assert "recengine-no-such-plugin" in result.output
    nothing = CliRunner().invoke(cli, ["plugins", "install"])
    assert nothing.exit_code == 2 and "name at least one package" in nothing.output
    itself = CliRunner().invoke(cli, ["plugins", "install", "recengine"])
    assert itself.exit_code == 2 and "recengine is not a plugin" in itself.output
    assert len(fake_pip.calls) == 1


def test_uninstall_only_removes_plugin_packages(fake_pip: FakePip, fake_site: Path) -> None:
    result = CliRunner().invoke(cli, ["plugins", "uninstall", "--yes", "acme_wide"])  # a plugin name works too
    assert result.exit_code == 0, result.output
    assert fake_pip.calls == [[sys.executable, "-m", "pip", "uninstall", "--yes", "acme-wide"]]
    not_plugin = CliRunner().invoke(cli, ["plugins", "uninstall", "torch"])
    assert not_plugin.exit_code == 1 and "'torch' is installed but is not a recengine plugin" in not_plugin.output
    missing = CliRunner().invoke(cli, ["plugins", "uninstall", "acme-nothing"])
    assert missing.exit_code == 1 and "'acme-nothing' is not installed; installed plugin packages:" in missing.output
    assert "acme-wide" in missing.output
    fake_pip.returncode = 2
    failing = CliRunner().invoke(cli, ["plugins", "uninstall", "-y", "acme-wide"])
    assert failing.exit_code == 1 and "uninstall failed: pip exited with status 2" in failing.output
    assert len(fake_pip.calls) == 2


# ---------------------------------------------------------------------------------------
# a real install and uninstall of the example package, offline, into a throwaway venv
# layered over this one (so the shared environment is never changed)
# ---------------------------------------------------------------------------------------


def _layered_venv(base: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base)], check=True)
    python = base / "bin" / "python"
    own_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(own_site, "_recengine_parent_env.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in parents))
    return python


@pytest.mark.slow
def test_real_install_and_uninstall_of_the_example_package(tmp_path: Path) -> None:
    python = _layered_venv(tmp_path / "venv")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "RECENGINE_LOAD_PLUGINS": f"{EXAMPLE_DIST},acme-nothing"}
    env.pop("PYTHONPATH", None)

    def recengine(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-c", "from recengine.cli import main; main()", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    # build from a copy: an in-tree setuptools build would leave build/ and egg-info in the example
    source = shutil.copytree(EXAMPLE, tmp_path / "recengine-plugin-example",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    site_dir = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    installed = recengine("plugins", "install", "--no-deps", "--no-build-isolation", str(source))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (site_dir / "recengine_gru" / "__init__.py").exists()  # in the layered venv, not the shared one
    listing = recengine("plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows[EXAMPLE_PLUGIN]["version"] == "0.1.0" and rows[EXAMPLE_PLUGIN]["distribution"] == EXAMPLE_DIST
    assert rows[EXAMPLE_PLUGIN]["components"] == {"encoders": ["gru"], "rankers": ["boost-rule"]}
    info = recengine("gru-info", "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["version"] == "0.1.0"
    removed = recengine("plugins", "uninstall", "--yes", EXAMPLE_DIST)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (site_dir / "recengine_gru").exists()
    broken = recengine("plugins", "install", "--no-deps", str(tmp_path / "no-such-project"))
    assert broken.returncode == 1 and "install failed: pip exited with status" in broken.stderr


# ---------------------------------------------------------------------------------------
# the example package installed in this environment: a model with `gru` is a first-class one
# ---------------------------------------------------------------------------------------


def example_installed() -> bool:
    return any(ep.name == EXAMPLE_PLUGIN for ep in metadata.entry_points(group="recengine"))


needs_example = pytest.mark.skipif(
    not example_installed(),
    reason=f"the example plugin is not installed: pip install --no-deps -e {EXAMPLE.relative_to(ROOT)} "
           "(the Makefile's install step does it)")


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("RECENGINE_LOAD_PLUGINS", raising=False)
    reset_plugin_manager()
    yield monkeypatch
    reset_plugin_manager()


@needs_example
def test_installed_example_is_listed_with_version_and_components(fresh_plugins) -> None:  # type: ignore[no-untyped-def]
    manager = get_plugin_manager()
    info = by_name(manager)[EXAMPLE_PLUGIN]
    assert info.error is None and info.version == metadata.version(EXAMPLE_DIST) and not info.builtin
    assert info.components == {"encoders": ["gru"], "rankers": ["boost-rule"]}
    listing = CliRunner().invoke(cli, ["plugins", "--json"])
    rows = {row["name"]: row for row in json.loads(listing.output)}
    assert rows[EXAMPLE_PLUGIN]["distribution"] == EXAMPLE_DIST
    group = click.Group("recengine", commands=dict(cli.commands))  # what main() does, on a copy
    manager.add_commands(group)
    shown = CliRunner().invoke(group, ["gru-info"])
    assert shown.exit_code == 0 and "recengine-gru" in shown.output and "encoder gru" in shown.output
    assert CliRunner().invoke(cli, ["plugins", "check", EXAMPLE_PLUGIN]).exit_code == 0


@pytest.fixture(scope="module")
def tiny_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("gru-shop")
    generated_shop(base, 120, 60, 3000, 3, publish=True)
    return base


@needs_example
@pytest.mark.slow
def test_model_with_gru_trains_evaluates_recommends_and_serves(  # type: ignore[no-untyped-def]
        fresh_plugins, tiny_shop: Path) -> None:
    from fastapi.testclient import TestClient

    from recengine.bundle import load_bundle
    from recengine.config import PipelineConfig
    from recengine.pipeline import evaluate_bundle, train_pipeline
    from recengine.recommender import Recommender
    from recengine.serve.api import build_api
    from recengine.serve.service import RecommendService

    counts = pl.read_parquet(tiny_shop / "data" / "items.parquet")["category"].value_counts(sort=True)
    boosted = str(counts["category"][0])  # the largest category, so it fills a top 5
    config = PipelineConfig(name="shop-gru", domain="ecommerce").with_overrides({
        "model.user_encoder": {"name": "gru", "params": {"layers": 1, "dropout": 0.1}},
        "model.dim": 16, "model.max_history": 10, "train.epochs": 1, "train.batch_size": 128,
        "ranking.rankers": [{"name": "popularity-fallback"}, {"name": "exclude-seen"},
                            {"name": "boost-rule", "params": {"column": "category", "boost": [boosted], "weight": 1.0}},
                            {"name": "topk"}],
    })
    trained = train_pipeline(tiny_shop / "store.duckdb", config, tiny_shop / "models", progress=False)
    assert trained.result.mode == "sequence"  # a sequence encoder trains like the transformer
    assert math.isfinite(trained.metrics["test"]["ndcg@10"]) and "popularity" in trained.metrics
    again = evaluate_bundle(load_bundle(trained.bundle_path), tiny_shop / "store.duckdb")
    assert again["test"]["ndcg@10"] == pytest.approx(trained.metrics["test"]["ndcg@10"], abs=1e-6)

    recommender = Recommender.load(trained.bundle_path, snapshot=tiny_shop / "snapshots")
    user = recommender.bundle.users.ids[0]
    items = recommender.recommend(user, 5)
    assert len(items) == 5 and len({i.item_id for i in items}) == 5
    assert items[0].reasons[-1] == f"boosted: category {boosted}"
    assert recommender.catalog.columns["category"][recommender.item_index[items[0].item_id]] == boosted

    service = RecommendService("ecommerce", {"bundle": str(trained.bundle_path),
                                             "snapshot": str(tiny_shop / "snapshots")})
    client = TestClient(build_api("ecommerce", lambda: service))
    response = client.post("/recommend", json={"user_id": user, "k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [i["item_id"] for i in body["items"]] == [i.item_id for i in items] and body["fallback"] is False
    assert body["model"] == f"shop-gru/{recommender.bundle.version}"

    # RECENGINE_LOAD_PLUGINS= hides the plugin: its names are unknown, its bundle cannot load
    fresh_plugins.setenv("RECENGINE_LOAD_PLUGINS", "")
    reset_plugin_manager()
    assert "gru" not in get_plugin_manager().names("encoders")
    assert EXAMPLE_PLUGIN not in by_name(get_plugin_manager())
    with pytest.raises(UnknownComponentError, match="unknown encoder 'gru'; known encoders: dense, ease"):
        Recommender.load(trained.bundle_path, snapshot=tiny_shop / "snapshots")
    hidden = CliRunner().invoke(cli, ["plugins", "--json"])
    assert EXAMPLE_PLUGIN not in {row["name"] for row in json.loads(hidden.output)}
    fresh_plugins.setenv("RECENGINE_LOAD_PLUGINS", EXAMPLE_DIST)  # named: loads again
    reset_plugin_manager()
    assert "gru" in get_plugin_manager().names("encoders")
    assert len(Recommender.load(trained.bundle_path, snapshot=tiny_shop / "snapshots").recommend(user, 3)) == 3
