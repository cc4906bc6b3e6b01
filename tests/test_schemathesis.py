"""Schemathesis fuzzes every domain's HTTP API from its own OpenAPI schema (no Ray).

Its stateless tests run per operation with the checks that find bugs in any API: no 500,
only documented status codes, the documented content type, bodies matching the response
schema. Bounded and derandomized, so a run is reproducible and short. Schema-only data rarely
names a real user, item or column, so hooks mix the domain's real ids and catalogue values
into a share of the generated requests: those reach the retrieval and the rankers instead of
stopping at the unknown-user fallback or the unknown-column check.

Each operation's cases come from ``APIOperation.as_strategy`` under ``@given``: Schemathesis'
own pytest integration (``schema.parametrize``) does not run under pytest 9 (it sets the
removed ``Function._nodeid``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, Case, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from recengine.project import ALL_DOMAINS, resolve_targets
from recengine.serve.api import build_api
from recengine.serve.service import RecommendService

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 30  # per operation and mode: 4 domains x 4 operations x 2 modes x 30 requests
DERANDOMIZE = True  # the same cases every run: a failure in CI reproduces locally
DEADLINE_MS = 2_000  # one request, generous for a loaded CI machine
REAL_SAMPLE = 20  # real users, items and values per column offered to the generator
SCALARS = (str, bool, int, float)


class RealValues:
    """Ids and filterable catalogue values of one served domain, as JSON scalars."""

    def __init__(self, service: RecommendService) -> None:
        recommender = service.recommender
        self.users = [str(u) for u in recommender.bundle.users.ids[:REAL_SAMPLE]]
        self.items = [str(i) for i in recommender.item_ids[:REAL_SAMPLE]]
        self.columns = {name: values for name, column in recommender.catalog.columns.items()
                        if (values := _scalars(column))}

    def filters(self) -> st.SearchStrategy[dict[str, list[Any]]]:
        """A few real columns, each with one to three of its real values."""
        entry = st.sampled_from(sorted(self.columns)).flatmap(
            lambda name: st.tuples(st.just(name), st.lists(st.sampled_from(self.columns[name]), min_size=1,
                                                           max_size=3, unique=True)))
        return st.lists(entry, max_size=3).map(dict)


def with_real_values(body: Any, user: str, filters: dict[str, list[Any]], exclude: list[str]) -> Any:
    """``body`` with a real user, real filters and real excluded items (when it is an object)."""
    if not isinstance(body, dict):
        return body
    context = body.get("context") if isinstance(body.get("context"), dict) else {}
    return {**body, "user_id": user, "context": {**context, "filters": filters, "exclude": exclude}}


def _scalars(column: np.ndarray) -> list[Any]:
    """Up to REAL_SAMPLE distinct JSON scalar values of a catalogue column (lists flattened)."""
    found: list[Any] = []
    for cell in column.tolist():
        for value in cell if isinstance(cell, list | tuple) else (cell,):
            if isinstance(value, SCALARS) and value not in found and not (isinstance(value, float) and value != value):
                found.append(value)
        if len(found) >= REAL_SAMPLE:
            break
    return found


@dataclass
class FuzzedApi:
    """A domain's schema (bound to its app) and the real values its hooks draw from."""

    schema: BaseSchema
    real: RealValues


@pytest.fixture(scope="module", params=ALL_DOMAINS)
def api(request: pytest.FixtureRequest, project: Path) -> FuzzedApi:
    """One domain's app and OpenAPI schema, with hooks feeding real values to a share of the cases."""
    domain = request.param
    target = resolve_targets(project, [domain])[0]
    service = RecommendService(domain, {"bundle": str(target.bundle), "snapshot": str(target.snapshot)})
    schema = schemathesis.openapi.from_asgi("/openapi.json", build_api(domain, lambda: service))
    real = RealValues(service)

    @schema.hook
    def before_generate_body(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        fed = st.builds(with_real_values, strategy, st.sampled_from(real.users), real.filters(),
                        st.lists(st.sampled_from(real.items), max_size=3))
        return st.one_of(strategy, fed)

    @schema.hook
    def before_generate_path_parameters(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(strategy, st.builds(lambda item: {"item_id": item}, st.sampled_from(real.items)))

    return FuzzedApi(schema, real)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_the_api_conforms_to_its_schema(api: FuzzedApi, mode: GenerationMode) -> None:
    """Every operation, with valid (positive) or invalid (negative) requests: all four checks pass."""
    operations = [result.ok() for result in api.schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /recommend", "GET /similar/{item_id}", "GET /health",
                                               "GET /model"}
    exchanges = [exchange for op in operations for exchange in fuzz(op.as_strategy(generation_mode=mode))]
    if mode is GenerationMode.POSITIVE:  # the real values got past validation to the rankers
        assert ranked_with_real_filters(exchanges, api.real.columns) > 0


def fuzz(cases: st.SearchStrategy[Case]) -> list[tuple[Case, Response]]:
    """Send up to MAX_EXAMPLES cases (the same ones every run), check every response, and
    return what was sent and answered."""
    sent: list[tuple[Case, Response]] = []

    @given(case=cases)
    @settings(max_examples=MAX_EXAMPLES, deadline=DEADLINE_MS, derandomize=DERANDOMIZE, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def check(case: Case) -> None:
        sent.append((case, case.call_and_validate(checks=CHECKS)))

    check()
    return sent


def ranked_with_real_filters(exchanges: list[tuple[Case, Response]], columns: Collection[str]) -> int:
    """How many /recommend requests filtering on real columns got a ranked (not fallback) answer."""
    return sum(1 for case, response in exchanges
               if case.operation.label == "POST /recommend" and response.status_code == 200
               and isinstance(case.body, dict) and (filters := case.body.get("context", {}).get("filters"))
               and set(filters) <= set(columns) and response.json()["fallback"] is False)
