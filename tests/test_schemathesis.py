"""Schemathesis fuzzes every domain's HTTP API from its own OpenAPI schema (no Ray).

Its stateless tests run per operation with the checks that find bugs in any API: no 500,
only documented status codes, the documented content type, bodies matching the response
schema. Bounded and derandomized, so a run is reproducible and short. Schema-only data rarely
names a real user, item or column, so hooks mix the domain's real ids and catalogue values
into a share of the generated requests: those reach the retrieval and the rankers instead of
stopping at the unknown-user fallback or the unknown-column check.

One domain (``WRITE_DOMAIN``) is served with a store (a copy of the session's, behind an
in-process writer) and every request carries a valid API key, so its write endpoints
(``/events``, ``/items``, ``/users``) are fuzzed past authentication; hooks give a share of
their batches real user and item ids, so some are stored (200) rather than refused (422).
The other domains are read-only and answer writes 401 (no key).

Each operation's cases come from ``APIOperation.as_strategy`` under ``@given``: Schemathesis'
own pytest integration (``schema.parametrize``) does not run under pytest 9 (it sets the
removed ``Function._nodeid``).
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
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

from recengine.api_keys import KEYS_FILE, ApiKeys
from recengine.live_writer import StoreWriter
from recengine.project import ALL_DOMAINS, DomainTarget, resolve_targets
from recengine.serve.api import build_api
from recengine.serve.live import LocalLog
from recengine.serve.service import RecommendService

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 30  # per operation and mode: 4 domains x 4 operations x 2 modes x 30 requests
DERANDOMIZE = True  # the same cases every run: a failure in CI reproduces locally
DEADLINE_MS = 2_000  # one request, generous for a loaded CI machine
REAL_SAMPLE = 20  # real users, items and values per column offered to the generator
SCALARS = (str, bool, int, float)
WRITE_DOMAIN = "ecommerce"  # served with a store and fuzzed with a valid key
WRITES = {"POST /events": "events", "POST /items": "items", "POST /users": "users"}  # operation: batch field


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


def with_real_ids(body: Any, kind: str, user: str, item: str) -> Any:
    """A write batch (``kind``: events, items or users) naming a real user and item: events
    of them (the domain's default type, at the server's time), or one update of a real
    item or user that sets no field (so a ``replace`` only empties its attributes)."""
    if not isinstance(body, dict) or not isinstance(body.get(kind), list):
        return body
    if kind == "events":
        records = [{**{k: v for k, v in event.items() if k not in ("event_type", "ts")}, "user_id": user,
                    "item_id": item} for event in body[kind] if isinstance(event, dict)]
    else:
        records = [{"item_id": item} if kind == "items" else {"user_id": user}]
    return {**body, kind: records or body[kind]}


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
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (the API key)


def writable_service(target: DomainTarget, folder: Path) -> tuple[RecommendService, StoreWriter, str]:
    """``target``'s service taking writes into a copy of its store (the session's store stays
    as it is), following the copy's writer; and the secret of a key of the domain."""
    store = Path(shutil.copyfile(target.store, folder / target.store.name))
    keys = ApiKeys(folder / KEYS_FILE)
    _, secret = keys.create(target.domain)
    writer = StoreWriter(store)
    service = RecommendService(target.domain, {"bundle": str(target.bundle), "snapshot": str(target.snapshot),
                                               "store": str(store), "keys": str(keys.path)}, log=LocalLog(writer))
    service.start_following()
    return service, writer, secret


@pytest.fixture(scope="module", params=ALL_DOMAINS)
def api(request: pytest.FixtureRequest, project: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedApi]:
    """One domain's app and OpenAPI schema, with hooks feeding real values to a share of the
    cases; WRITE_DOMAIN's with a store and the header of a valid key."""
    domain = request.param
    target = resolve_targets(project, [domain])[0]
    writer, headers = None, {}
    if domain == WRITE_DOMAIN:
        service, writer, secret = writable_service(target, tmp_path_factory.mktemp(f"fuzzed-{domain}"))
        headers = {"Authorization": f"Bearer {secret}"}
    else:
        service = RecommendService(domain, {"bundle": str(target.bundle), "snapshot": str(target.snapshot)})
    schema = schemathesis.openapi.from_asgi("/openapi.json", build_api(domain, lambda: service))
    real = RealValues(service)

    @schema.hook
    def before_generate_body(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        kind = WRITES.get(context.operation.label) if context.operation is not None else None
        if kind is not None:
            fed = st.builds(with_real_ids, strategy, st.just(kind), st.sampled_from(real.users),
                            st.sampled_from(real.items))
        else:
            fed = st.builds(with_real_values, strategy, st.sampled_from(real.users), real.filters(),
                            st.lists(st.sampled_from(real.items), max_size=3))
        return st.one_of(strategy, fed)

    @schema.hook
    def before_generate_path_parameters(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        if context.operation is not None and "{user_id}" in context.operation.path:  # /users/{user_id}/history
            return st.one_of(strategy, st.builds(lambda user: {"user_id": user}, st.sampled_from(real.users)))
        return st.one_of(strategy, st.builds(lambda item: {"item_id": item}, st.sampled_from(real.items)))

    yield FuzzedApi(schema, real, headers)
    if writer is not None:
        assert service.follower is not None
        service.follower.stop()
        writer.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_the_api_conforms_to_its_schema(api: FuzzedApi, mode: GenerationMode) -> None:
    """Every operation, with valid (positive) or invalid (negative) requests: all four checks pass."""
    operations = [result.ok() for result in api.schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /recommend", "GET /similar/{item_id}", "GET /health",
                                               "GET /model", *WRITES}
    exchanges = [exchange for op in operations
                 for exchange in fuzz(op.as_strategy(generation_mode=mode), api.headers)]
    if mode is GenerationMode.POSITIVE:  # the real values got past validation to the rankers
        assert ranked_with_real_filters(exchanges, api.real.columns) > 0
    if api.headers and mode is GenerationMode.POSITIVE:  # the key got writes past authentication: some stored
        assert stored_writes(exchanges) == set(WRITES)


def stored_writes(exchanges: list[tuple[Case, Response]]) -> set[str]:
    """The write operations that had at least one batch stored (200)."""
    return {case.operation.label for case, response in exchanges
            if case.operation.label in WRITES and response.status_code == 200}


def fuzz(cases: st.SearchStrategy[Case], headers: dict[str, str]) -> list[tuple[Case, Response]]:
    """Send up to MAX_EXAMPLES cases (the same ones every run) with ``headers``, check every
    response, and return what was sent and answered."""
    sent: list[tuple[Case, Response]] = []

    @given(case=cases)
    @settings(max_examples=MAX_EXAMPLES, deadline=DEADLINE_MS, derandomize=DERANDOMIZE, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def check(case: Case) -> None:
        sent.append((case, case.call_and_validate(headers=headers, checks=CHECKS)))

    check()
    return sent


def ranked_with_real_filters(exchanges: list[tuple[Case, Response]], columns: Collection[str]) -> int:
    """How many /recommend requests filtering on real columns got a ranked (not fallback) answer."""
    return sum(1 for case, response in exchanges
               if case.operation.label == "POST /recommend" and response.status_code == 200
               and isinstance(case.body, dict) and (filters := case.body.get("context", {}).get("filters"))
               and set(filters) <= set(columns) and response.json()["fallback"] is False)
