"""``recengine retrain``: a new bundle is compared with the serving one user by user, and
deployed, tried online or refused accordingly; a refused one never becomes the default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from recengine.bundle import resolve_bundle
from recengine.cli import cli
from recengine.cli.retrain_cmd import decide
from recengine.compare import Comparison

DOMAIN = "news"


def _comparison(diff: float, p: float) -> Comparison:
    return Comparison("ndcg@10", "seq", 100, 0.2 + diff, 0.2, diff, p, p)


@pytest.mark.parametrize(("diff", "p", "then", "expected"), [
    (0.01, 0.01, "deploy", "deployed"),    # better: deploy
    (0.0, 1.0, "deploy", "deployed"),      # as good: deploy (a newer model of the same quality)
    (-0.001, 0.8, "deploy", "refused"),    # worse on average, even if not significantly: never deployed
    (-0.001, 0.8, "experiment", "experiment"),  # ... but users may decide
    (-0.02, 0.001, "experiment", "refused"),    # significantly worse: not even tried
    (-0.02, 0.001, "none", "kept"),
])
def test_decisions_never_deploy_a_worse_model(diff: float, p: float, then: str, expected: str) -> None:
    assert decide(_comparison(diff, p), then) == expected


def test_retrain_trains_compares_and_acts_on_the_figures(project: Path, tmp_path: Path) -> None:
    copy = tmp_path / "project"
    shutil.copytree(project / DOMAIN, copy / DOMAIN)
    for leftover in (copy / DOMAIN).glob("*.writer.json"):
        leftover.unlink()
    models = copy / DOMAIN / "models"
    before = resolve_bundle(DOMAIN, models)
    runner = CliRunner()
    kept = runner.invoke(cli, ["retrain", "--project", str(copy), "--domain", DOMAIN, "--then", "none",
                               "--epochs", "1", "--json"])
    assert kept.exit_code == 0, kept.output
    outcome = json.loads(kept.output)
    comparison = outcome["comparison"]
    assert outcome["decision"] == "kept" and outcome["serving"] == f"{DOMAIN}/{before.name}"
    assert comparison["users"] > 50 and 0 <= comparison["old_mean"] <= 1 and 0 <= comparison["new_mean"] <= 1
    assert comparison["mean_diff"] == pytest.approx(comparison["new_mean"] - comparison["old_mean"])
    newest = resolve_bundle(DOMAIN, models)
    assert newest.name == outcome["new"].split("/")[1] != before.name

    deployed = runner.invoke(cli, ["retrain", "--project", str(copy), "--domain", DOMAIN, "--epochs", "1", "--json"])
    outcome = json.loads(deployed.output)
    version = outcome["new"].split("/")[1]
    if outcome["comparison"]["mean_diff"] < 0:  # refused: moved aside, exit 1, the serving bundle still newest
        assert deployed.exit_code == 1 and outcome["decision"] == "refused"
        assert not (models / DOMAIN / version).exists() and Path(outcome["moved_to"]).is_dir()
        assert resolve_bundle(DOMAIN, models) == newest
    else:
        assert deployed.exit_code == 0 and outcome["decision"] == "deployed"
        assert resolve_bundle(DOMAIN, models).name == version
