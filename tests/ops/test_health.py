"""Health routes: green on live dependencies, red within the timeout when PostgreSQL or Redis is stopped,
green again once it is back; Solana slot lag; the simulator fallback shown, not hidden."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from http_app.errors import request_id_and_errors
from http_app.health import setup_health
from http_app.keys import DB_POOL, REDIS, SETTINGS
from http_app.metrics import setup_metrics
from stream_app.db import create_pool
from stream_app.embedded import EmbeddedPostgres, EmbeddedRedis
from stream_app.rpc_fallback import clear_fallback, record_fallback
from stream_app.settings import Settings
from stream_app.sources.simulator.server import SimulatorHandle, start_simulator
from tests.ops.conftest import MakeClient, free_port

pytestmark = pytest.mark.timeout(90)  # a hang fails this test instead of stalling the suite

DEAD_RPC = "http://127.0.0.1:9/"  # discard port: connection refused


async def get(client: TestClient, path: str) -> tuple[int, dict[str, Any], float]:
    started = time.perf_counter()
    resp = await client.get(path)
    return resp.status, await resp.json(), time.perf_counter() - started


async def test_everything_green(web: TestClient, simulator: SimulatorHandle) -> None:
    status, body, _ = await get(web, "/health")
    assert status == 200, body
    assert body["status"] == "ok"
    assert {"db", "redis", "solana"} <= set(body["checks"])
    assert body["checks"]["solana"]["slot"] == simulator.cluster.slot
    assert body["checks"]["solana"]["slotLag"] == 0
    assert "simulatorFallback" not in body
    for path in ("/healthz", "/readyz", "/health/db", "/health/redis", "/health/solana"):
        status, body, _ = await get(web, path)
        assert status == 200, (path, body)
    # /health is public and unthrottled: the RPC is asked at most once per SOLANA_TTL, not per request.
    for _ in range(5):
        await get(web, "/health")
    assert simulator.requests["getSlot"] == 1


async def test_solana_lag_is_measured_against_the_best_configured_node(
    make_client: MakeClient, ops_settings: Settings, simulator: SimulatorHandle
) -> None:
    lagging = await start_simulator(0, share_with=simulator)  # a second node of the same cluster
    lagging.faults.add("stale", lag_slots=5000)
    try:
        app = create_app_like(ops_settings.with_overrides(solana_rpc_urls=(lagging.url, simulator.url)))
        client = await make_client(app)
        status, body, _ = await get(client, "/health/solana")
        assert status == 200, body  # one usable node is enough
        endpoints = {e["url"]: e for e in body["endpoints"]}
        behind = endpoints[lagging.url.rstrip("/") + "/"]
        assert behind["status"] == "lagging" and behind["slotLag"] == 5000
        assert body["slot"] == simulator.cluster.slot and body["slotLag"] == 0

        client = await make_client(create_app_like(ops_settings.with_overrides(solana_rpc_urls=(lagging.url,))))
        lagging.faults.clear()
        lagging.faults.add("rpc_error", methods=["getHealth"], code=-32005)  # "node is behind", no slot count
        status, body, _ = await get(client, "/health/solana")
        assert status == 503 and body["status"] == "fail", body
    finally:
        await lagging.close()


async def test_simulator_fallback_is_reported_and_does_not_mark_the_system_down(
    make_client: MakeClient, ops_settings: Settings, redis_client: Any, simulator: SimulatorHandle
) -> None:
    settings = ops_settings.with_overrides(solana_rpc_urls=(DEAD_RPC,))
    client = await make_client(create_app_like(settings))
    status, body, _ = await get(client, "/health")
    assert status == 503 and body["status"] == "degraded" and body["failing"] == ["solana"]

    await record_fallback(redis_client, settings.redis_prefix, url=simulator.url, configured=[DEAD_RPC],
                          reason="connection refused")
    status, body, _ = await get(client, "/health")
    assert status == 200 and body["status"] == "ok", body
    assert body["simulatorFallback"]["active"] is True
    assert body["simulatorFallback"]["url"] == simulator.url
    assert body["checks"]["solana"]["source"] == "simulator"
    await clear_fallback(redis_client, settings.redis_prefix)


def create_app_like(settings: Settings) -> web.Application:
    """The health/metrics part of the web app on pools of its own (the full app is tested elsewhere)."""
    app = web.Application(middlewares=[request_id_and_errors])
    app[SETTINGS] = settings

    async def resources(app: web.Application) -> AsyncIterator[None]:
        import redis.asyncio as aioredis

        assert settings.database_url and settings.redis_url
        app[DB_POOL] = await create_pool(settings.database_url, settings, min_size=1, max_size=2)
        app[REDIS] = aioredis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        yield
        await app[REDIS].aclose()
        await app[DB_POOL].close()

    app.cleanup_ctx.append(resources)
    setup_health(app)
    setup_metrics(app)
    return app


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    server = EmbeddedRedis(root=tmp_path / "r", port=free_port(), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Any:
    server = EmbeddedPostgres(root=tmp_path / "p")
    url = server.start()
    yield server, url
    server.stop()


async def wait_for(client: TestClient, path: str, status: int, seconds: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        got, body, _ = await get(client, path)
        if got == status or time.monotonic() > deadline:
            assert got == status, (path, body)
            return body
        await _sleep(0.2)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_health_goes_red_when_redis_stops_and_green_when_it_is_back(
    make_client: MakeClient, ops_settings: Settings, own_redis: EmbeddedRedis
) -> None:
    url = own_redis.url
    client = await make_client(create_app_like(ops_settings.with_overrides(redis_url=url)))
    await wait_for(client, "/health", 200)
    own_redis.stop()
    status, body, elapsed = await get(client, "/health")
    assert status == 503 and body["status"] == "degraded" and body["failing"] == ["redis"], body
    assert body["checks"]["db"]["status"] == "ok"
    assert elapsed < 5.0, "each check is bounded by HEALTH_TIMEOUT"
    assert (await get(client, "/health/redis"))[0] == 503
    assert (await get(client, "/readyz"))[0] == 503
    assert (await get(client, "/healthz"))[0] == 200  # the process itself is alive
    assert own_redis.start() == url, "Redis came back on another port"
    await wait_for(client, "/health", 200)
    await wait_for(client, "/readyz", 200)


async def test_health_goes_red_when_postgres_stops_and_green_when_it_is_back(
    make_client: MakeClient, ops_settings: Settings, own_postgres: tuple[EmbeddedPostgres, str]
) -> None:
    server, url = own_postgres
    client = await make_client(create_app_like(ops_settings.with_overrides(database_url=url)))
    await wait_for(client, "/health", 200)
    server.stop()
    status, body, elapsed = await get(client, "/health")
    assert status == 503 and body["failing"] == ["db"], body
    assert elapsed < 5.0
    assert (await get(client, "/health/db"))[0] == 503
    assert (await get(client, "/readyz"))[0] == 503
    assert (await get(client, "/healthz"))[0] == 200
    assert server.start() == url
    await wait_for(client, "/health", 200)
    await wait_for(client, "/readyz", 200)
