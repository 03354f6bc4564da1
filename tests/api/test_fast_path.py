"""The cached hot read's fast path (http_app.front + the GraphQL handler's remembered raw requests): what a
client sees must be what the full path gives, for every caller, limit, token and invalidation.

A request is proved to take the fast path by making the full path's parameter reading fail: the fast path
never calls it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from http_app.auth import ACCESS_CONTROL
from http_app.graphql import http as graphql_http
from http_app.keys import CACHE
from http_app.metrics import RED
from stream_app.settings import Settings
from tests.api.conftest import bearer
from tests.api.seed import Seeded

HOT = "{ validators { id validatorPubkey uptime commission latestTrustScore { score createdAt } } }"
RUNS = "{ scoringRuns { id status } }"
# Headers whose value differs per request by design; every other header must be identical.
PER_REQUEST = {"x-request-id", "date", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit"}


def only_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(request: Any) -> Any:
        raise AssertionError("the full path ran: the fast path did not serve this request")

    monkeypatch.setattr(graphql_http, "read_params", refuse)


async def ask(client: TestClient, query: str = HOT, headers: dict[str, str] | None = None, *,
              get: bool = False) -> ClientResponse:
    if get:
        return await client.get("/graphql", params={"query": query}, headers=headers or {})
    return await client.post("/graphql", data=orjson.dumps({"query": query}),
                             headers={"Content-Type": "application/json", **(headers or {})})


def stable_headers(resp: ClientResponse) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.headers.items() if k.lower() not in PER_REQUEST}


@pytest.mark.parametrize("get", [False, True], ids=["POST", "GET"])
@pytest.mark.parametrize("extra", [{}, {"Accept-Encoding": "gzip"}, {"Accept": "application/json"}],
                         ids=["plain", "gzip", "json"])
async def test_fast_answer_is_the_full_paths_answer(api: TestClient, seeded: Seeded, monkeypatch: pytest.MonkeyPatch,
                                                    get: bool, extra: dict[str, str]) -> None:
    first = await ask(api, headers=extra, get=get)
    assert first.status == 200 and first.headers["X-Cache"] == "MISS"
    graphql_http.PLANS.clear()  # forget the raw request: the next answer comes from the full path's lookup
    full = await ask(api, headers=extra, get=get)
    full_body = await full.read()
    only_fast_path(monkeypatch)
    fast = await ask(api, headers=extra, get=get)
    fast_body = await fast.read()
    assert full.status == fast.status == 200
    assert full.headers["X-Cache"] == fast.headers["X-Cache"] == "HIT-LOCAL"
    assert stable_headers(fast) == stable_headers(full)
    assert fast_body == full_body and orjson.loads(fast_body)["data"]["validators"]
    for name in ("X-Request-Id", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit"):
        assert fast.headers[name], name
    assert int(fast.headers["X-RateLimit-Remaining"]) == int(full.headers["X-RateLimit-Remaining"]) - 1
    if "Accept-Encoding" in extra:
        assert fast.headers["Content-Encoding"] == "gzip"


async def test_fast_answer_echoes_the_callers_request_id_and_is_counted(api: TestClient, seeded: Seeded,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    await ask(api)
    only_fast_path(monkeypatch)
    requests_before = RED.requests.get(("POST", "/graphql", 200), 0)
    queries_before = sum(RED.graphql_seconds["query"].counts) if "query" in RED.graphql_seconds else 0
    resp = await ask(api, headers={"X-Request-Id": "trace-me-42"})
    assert resp.status == 200 and resp.headers["X-Request-Id"] == "trace-me-42"
    assert RED.requests[("POST", "/graphql", 200)] == requests_before + 1
    assert sum(RED.graphql_seconds["query"].counts) == queries_before + 1
    forged = await ask(api, headers={"X-Request-Id": "x" * 65})
    assert forged.headers["X-Request-Id"] != "x" * 65 and len(forged.headers["X-Request-Id"]) == 32


async def test_a_limited_client_gets_429_json_for_a_cached_query(make_api: Any, seeded: Seeded) -> None:
    """Bursts of concurrent requests for a cached answer (shared script runs and reserved slots): exactly
    `limit` are answered, each with its own remaining count, and the rest get the limiter's JSON 429."""
    limit = 48
    client: TestClient = await make_api(rate_limit=limit)
    statuses: list[int] = []
    remaining: list[int] = []
    refusals: list[dict[str, Any]] = []
    for _ in range(10):
        answers = await asyncio.gather(*(ask(client) for _ in range(8)))
        for resp in answers:
            statuses.append(resp.status)
            if resp.status == 200:
                remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
                assert resp.headers["X-RateLimit-Limit"] == str(limit)
            else:
                assert resp.status == 429 and resp.headers["Retry-After"]
                assert resp.headers["X-RateLimit-Remaining"] == "0" and resp.headers["X-Request-Id"]
                refusals.append(await resp.json())
    assert statuses.count(200) == limit
    assert sorted(remaining) == list(range(limit))  # exact: every admitted request counted once
    assert refusals and all(r["error"] == "Too Many Requests" and r["errors"][0]["extensions"]["code"]
                            == "RATE_LIMITED" for r in refusals)


async def test_roles_never_get_another_scopes_cached_bytes(api: TestClient, api_settings: Settings,
                                                           seeded: Seeded) -> None:
    viewer, admin = bearer(api_settings, "viewer"), bearer(api_settings, "admin")
    assert (await ask(api, RUNS, viewer)).headers["X-Cache"] == "MISS"
    assert (await ask(api, RUNS, viewer)).headers["X-Cache"] == "HIT-LOCAL"  # the raw request is now known
    assert (await ask(api, RUNS, admin)).headers["X-Cache"] == "MISS"  # same bytes sent, other scope
    anonymous = await ask(api, RUNS)
    body = await anonymous.json(content_type=None)
    assert anonymous.headers["X-Cache"] == "MISS" and body["data"] is None  # errors are never cached
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    user = await ask(api, RUNS, bearer(api_settings, "user"))  # other permissions: other scope
    assert user.headers["X-Cache"] == "MISS"


async def test_bad_or_revoked_tokens_are_refused_before_the_cache(api: TestClient, api_settings: Settings,
                                                                  seeded: Seeded) -> None:
    viewer = bearer(api_settings, "viewer")
    await ask(api, HOT, viewer)
    assert (await ask(api, HOT, viewer)).headers["X-Cache"] == "HIT-LOCAL"
    bad = await ask(api, HOT, {"Authorization": viewer["Authorization"][:-3] + "abc"})
    assert bad.status == 401 and (await bad.json())["error"] == "Unauthorized"
    assert bad.headers["X-RateLimit-Limit"] and bad.headers["X-Request-Id"]
    control = api.app[ACCESS_CONTROL]
    await control.revoke(control.verify(viewer["Authorization"].split(" ", 1)[1]))
    revoked = await ask(api, HOT, viewer)
    assert revoked.status == 401 and (await revoked.json())["message"] == "token has been revoked"


async def test_invalidation_reaches_fast_answers(api: TestClient, seeded: Seeded,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    await ask(api)
    only_fast_path(monkeypatch)
    assert (await ask(api)).headers["X-Cache"] == "HIT-LOCAL"
    await api.app[CACHE].invalidate()
    monkeypatch.undo()
    after = await ask(api)
    assert after.status == 200 and after.headers["X-Cache"] == "MISS"


async def test_hostile_variants_of_a_known_request_get_the_full_paths_errors(api: TestClient,
                                                                             seeded: Seeded) -> None:
    await ask(api)
    assert (await ask(api)).headers["X-Cache"] == "HIT-LOCAL"
    body = orjson.dumps({"query": HOT})
    wrong_type = await api.post("/graphql", data=body, headers={"Content-Type": "text/plain"})
    assert wrong_type.status == 415
    refused = await api.post("/graphql", data=body, headers={"Content-Type": "application/json",
                                                             "Accept": "image/png"})
    assert refused.status == 406
    huge = orjson.dumps({"query": HOT, "variables": {"pad": "x" * 200_000}})
    too_big = await api.post("/graphql", data=huge, headers={"Content-Type": "application/json"})
    assert too_big.status == 413
    batched = await api.post("/graphql", data=b"[" + body + b"]", headers={"Content-Type": "application/json"})
    assert batched.status == 400
    mutation_over_get = await api.get("/graphql", params={"query": "mutation { invalidateValidatorCache { success } }"})
    assert mutation_over_get.status == 405 and mutation_over_get.headers["Allow"] == "POST"


def test_remembered_requests_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    plans = graphql_http._Plans()
    monkeypatch.setattr(graphql_http, "PLAN_MAX_ENTRIES", 4)
    plan = graphql_http._Plan("application/json", HOT, None, b"{}", None)
    for i in range(9):
        plans.put((b"body %d" % i, "application/json", ""), plan)
    assert plans.get((b"body 8", "application/json", "")) is plan
    assert plans.get((b"body 0", "application/json", "")) is None  # emptied when full
    assert len(plans._plans) <= 4
