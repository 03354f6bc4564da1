"""Hostile or odd but valid GraphQL, generated from our own SDL: every answer is a spec-shaped result
with coded errors, never a 500 or a masked internal error."""

from __future__ import annotations

import orjson
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis_graphql import queries

from http_app.graphql.limits import SDL_PATH
from tests.api.seed import Seeded

EXPECTED_CODES = {"BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED", "QUERY_TOO_COMPLEX", "UNAUTHENTICATED",
                  "FORBIDDEN", "GRAPHQL_PARSE_FAILED", "OPERATION_TIMEOUT"}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(query=queries(SDL_PATH.read_text()))
async def test_generated_queries_never_fail_internally(api: TestClient, seeded: Seeded, query: str) -> None:
    resp = await api.post("/graphql", json={"query": query})
    assert resp.status in (200, 400), (resp.status, query)
    body = orjson.loads(await resp.read())
    for error in body.get("errors", []):
        code = error["extensions"]["code"]
        assert code in EXPECTED_CODES, (code, error, query)
    if resp.status == 200 and "errors" not in body:
        assert body["data"] is not None
