"""The response cache: tiers, scope isolation, what is never cached, live invalidation with warming,
shared hit rate, the seed's REST routes (admin-only clear, audited), and Redis down."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from http_app.graphql.limits import SCHEMA_VERSION
from http_app.keys import CACHE, LIVE_HUB
from stream_app import live
from stream_app.settings import Settings
from tests.api.conftest import bearer
from tests.api.seed import Seeded

HOT = "{ validators { id validatorPubkey uptime commission latestTrustScore { score createdAt } } }"


async def post(client: TestClient, query: str, headers: dict[str, str] | None = None) -> tuple[str | None, Any]:
    resp = await client.post("/graphql", json={"query": query}, headers=headers or {})
    assert resp.status == 200, await resp.text()
    return resp.headers.get("X-Cache"), orjson.loads(await resp.read())


async def cache_keys(redis: aioredis.Redis, prefix: str) -> list[str]:
    return sorted([k.decode() async for k in redis.scan_iter(match=f"{prefix}:gql:*") if b":warm:" not in k])


async def test_miss_then_local_hit_and_redis_key(api: TestClient, seeded: Seeded, redis_client: aioredis.Redis,
                                                 redis_prefix: str) -> None:
    state, first = await post(api, HOT)
    assert state == "MISS"
    state, second = await post(api, HOT)
    assert state == "HIT-LOCAL" and second == first
    keys = await cache_keys(redis_client, redis_prefix)
    assert len(keys) == 1 and keys[0].startswith(f"{redis_prefix}:gql:v{SCHEMA_VERSION}:0-0:public:")
    assert await redis_client.pttl(keys[0]) > 0


async def test_scope_isolation(api: TestClient, api_settings: Settings, seeded: Seeded,
                               redis_client: aioredis.Redis, redis_prefix: str) -> None:
    runs = "{ scoringRuns { id status } }"
    assert (await post(api, runs, bearer(api_settings, "viewer")))[0] == "MISS"
    state, _ = await post(api, runs, bearer(api_settings, "admin"))
    assert state == "MISS"  # an admin never reads a viewer's entry, and vice versa
    assert (await post(api, runs, bearer(api_settings, "viewer")))[0] == "HIT-LOCAL"
    _, refused = await post(api, runs)
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"  # anonymous gets nothing cached
    keys = await cache_keys(redis_client, redis_prefix)
    scopes = sorted(k.split(":")[5] for k in keys)  # <prefix>:gql:v<schema>:<version>:role:<name>:...
    assert len(keys) == 2 and scopes == ["admin", "viewer"]


async def test_public_answers_shared_by_every_caller(api: TestClient, api_settings: Settings, seeded: Seeded,
                                                     redis_client: aioredis.Redis, redis_prefix: str) -> None:
    assert (await post(api, HOT))[0] == "MISS"
    assert (await post(api, HOT, bearer(api_settings, "admin")))[0] == "HIT-LOCAL"
    keys = await cache_keys(redis_client, redis_prefix)
    assert len(keys) == 1 and ":public:" in keys[0]


async def test_errors_mutations_and_live_counters_never_cached(api: TestClient, api_settings: Settings,
                                                               seeded: Seeded, redis_client: aioredis.Redis,
                                                               redis_prefix: str) -> None:
    for _ in range(2):
        state, body = await post(api, "{ validatorsConnection(first: 500) { totalCount } }")
        assert body["errors"] and state == "MISS"
    admin = bearer(api_settings, "admin")
    for query in ("mutation { invalidateValidatorCache { success } }", "{ systemStats { timestamp } }"):
        for _ in range(2):
            state, body = await post(api, query, admin)
            assert "errors" not in body and state is None
    assert await cache_keys(redis_client, redis_prefix) == []


async def test_second_process_reads_shared_tier(make_api: Any, seeded: Seeded) -> None:
    first, second = await make_api(), await make_api()
    state, body = await post(first, HOT)
    assert state == "MISS"
    state, shared = await post(second, HOT)
    assert state == "HIT" and shared == body
    assert (await post(second, HOT))[0] == "HIT-LOCAL"


async def test_run_completion_invalidates_and_warms(api: TestClient, seeded: Seeded, db_pool: asyncpg.Pool,
                                                    redis_client: aioredis.Redis, redis_prefix: str) -> None:
    await asyncio.wait_for(api.app[LIVE_HUB].connected.wait(), 5)
    cache = api.app[CACHE]
    _, before = await post(api, HOT)
    await post(api, HOT)
    run_id = uuid.uuid4()
    await db_pool.execute("INSERT INTO scoring_runs (id, status, validator_count) VALUES ($1, 'completed', 20)",
                          run_id)
    await db_pool.execute(
        """INSERT INTO trust_scores (validator_id, scoring_run_id, score, scoring_version)
           SELECT id, $1, 77.5, 'v1' FROM validators""", run_id)
    generation = cache.generation
    await live.announce(redis_client, redis_prefix, {"type": "run", "run_id": str(run_id), "status": "completed",
                                                     "success_count": 20, "fail_count": 0, "validator_count": 20})
    for _ in range(250):
        if cache.generation != generation:
            break
        await asyncio.sleep(0.02)
    assert cache.generation != generation, "the live event never reached the cache"
    await cache.settled()
    state, after = await post(api, HOT)
    assert state == "HIT-LOCAL"  # re-rendered by warming: no reader paid the cold cost
    assert after != before
    assert {v["latestTrustScore"]["score"] for v in after["data"]["validators"]} == {77.5}


async def test_cache_status_hit_rate_and_admin_clear(api: TestClient, api_settings: Settings, seeded: Seeded,
                                                     db_pool: asyncpg.Pool) -> None:
    for _ in range(4):
        await post(api, HOT)  # 1 miss, 3 hits
    resp = await api.get("/cache/status")
    body = await resp.json()
    assert body["status"] == "ok"
    assert set(body["cache"]) == {"totalKeys", "memoryUsage", "hitRate"}
    assert body["cache"]["totalKeys"] == 1 and body["cache"]["hitRate"] == 0.75

    assert (await api.post("/cache/clear")).status == 401
    assert (await api.post("/cache/clear", headers=bearer(api_settings, "viewer"))).status == 403
    resp = await api.post("/cache/clear", headers=bearer(api_settings, "admin", user_id="7"))
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    row = await db_pool.fetchrow("SELECT action, actor_id, metadata FROM audit_log ORDER BY id DESC LIMIT 1")
    assert row["action"] == "cache.clear" and row["actor_id"] == "7" and row["metadata"]["via"] == "rest"
    body = await (await api.get("/cache/status")).json()
    assert body["cache"]["totalKeys"] == 0 and body["cache"]["hitRate"] is None
    assert (await post(api, HOT))[0] == "MISS"


async def test_redis_down_still_answers_from_postgres(make_api: Any, seeded: Seeded) -> None:
    client = await make_api(redis_url="redis://127.0.0.1:1/0")
    for _ in range(2):
        resp = await client.post("/graphql", json={"query": HOT})
        assert resp.status == 200
        body = orjson.loads(await resp.read())
        assert len(body["data"]["validators"]) == len(seeded.vote_accounts)
    status = await (await client.get("/cache/status")).json()
    assert status["status"] == "ok" and status["cache"]["hitRate"] is None


async def test_postgres_down_answers_service_unavailable(make_api: Any) -> None:
    client = await make_api(database_url="postgresql://postgres@127.0.0.1:1/nowhere")
    resp = await client.post("/graphql", json={"query": "{ validators { id } }"})
    assert resp.status == 200  # executed: the error has a path, data is null
    body = orjson.loads(await resp.read())
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "nowhere" not in body["errors"][0]["message"]  # no connection details leak
    assert resp.headers.get("X-Cache") == "MISS"  # an error is never stored
    assert (await client.post("/graphql", json={"query": "{ validators { id } }"})).headers["X-Cache"] == "MISS"
