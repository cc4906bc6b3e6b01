"""Only recengine's own error types are reported as the user's mistake.

In the CLI an ``EngineError`` or ``StoreError`` is one line and exit 1, anything else keeps its
traceback; over HTTP a ``RequestError`` is a 422, a ``NotFoundError`` a 404 and any other
exception a 500 (a bug), never a misleading 422.
"""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from recengine import ConfigError, DataError, EngineError, NotFoundError, RequestError
from recengine.cli.common import friendly_errors
from recengine.config import PipelineConfig
from recengine.feature_store import IngestError
from recengine.plugin_manager import UnknownComponentError
from recengine.serve.api import build_api
from recengine.serve.schemas import RecommendRequest


def _command(error: BaseException) -> click.Command:
    @click.command()
    def fails() -> None:
        with friendly_errors():
            raise error
    return fails


@pytest.mark.parametrize("error", [
    ConfigError("train.epochs must be positive"),
    DataError("the split left no training events"),
    UnknownComponentError("encoders", "gru", ["dense"]),
    IngestError("events.csv", "not a timestamp", row=3, column="ts"),
])
def test_own_errors_are_one_line_and_exit_1(error: Exception) -> None:
    result = CliRunner().invoke(_command(error))
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error:") and str(error).splitlines()[0] in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("error", [ValueError("a bug"), KeyError("x"), TypeError("unhashable")])
def test_other_errors_are_bugs_with_their_traceback(error: Exception) -> None:
    result = CliRunner().invoke(_command(error))
    assert result.exit_code != 0 and "Error:" not in result.output
    assert result.exception is error  # it propagates (click prints the traceback) instead of "Error: 'x'"


def test_error_types_refine_the_builtins() -> None:
    assert issubclass(RequestError, ValueError) and issubclass(ConfigError, ValueError)
    assert issubclass(NotFoundError, LookupError) and issubclass(UnknownComponentError, NotFoundError)
    assert all(issubclass(kind, EngineError) for kind in (ConfigError, DataError, RequestError, NotFoundError))


def test_bad_overrides_are_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"invalid setting \(train.epochs\)"):
        PipelineConfig().with_overrides({"train.epochs": 0, "train.lr": None})


class _Service:
    """Answers like a RecommendService whose recommender raises ``error``."""

    config = None  # served without key checks on reads

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def recommend_many(self, requests: list[RecommendRequest]) -> Any:
        raise self.error

    def similar(self, item_id: str, k: int) -> Any:
        raise self.error


@pytest.mark.parametrize("error, status", [
    (RequestError("unknown item column 'colour'"), 422),
    (ValueError("a bug in a ranker"), 500),
    (KeyError("a bug"), 500),
])
def test_http_maps_only_request_errors_to_422(error: Exception, status: int) -> None:
    client = TestClient(build_api("shop", lambda: _Service(error)), raise_server_exceptions=False)
    response = client.post("/recommend", json={"user_id": "u1", "k": 3})
    assert response.status_code == status
    if status == 422:
        assert response.json()["detail"] == str(error)


@pytest.mark.parametrize("error, status", [(NotFoundError("unknown item 'i9'"), 404), (KeyError("i9"), 500)])
def test_similar_maps_only_not_found_to_404(error: Exception, status: int) -> None:
    client = TestClient(build_api("shop", lambda: _Service(error)), raise_server_exceptions=False)
    assert client.get("/similar/i9").status_code == status


def test_store_errors_cross_processes_whole() -> None:
    """The writer actor answers a refused batch with its error: every store error pickles with
    its message and fields (their ``__init__`` signatures differ from ``Exception``'s)."""
    import pickle

    from recengine.feature_store.errors import IngestError, SnapshotError, StoreLockedError, UnknownEntitiesError

    errors = [IngestError("POST /shop/events", "cannot read 'x' as timestamp", row=3, column="ts",
                          expected="ISO-8601", row_label="record"),
              UnknownEntitiesError("batch", "items", 2, ["a", "b"]), StoreLockedError("s.duckdb", 12, "held"),
              SnapshotError("v000001", "users.parquet", "is missing")]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)
