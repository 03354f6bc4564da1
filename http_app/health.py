"""Health routes. Every dependency check has a timeout (HEALTH_TIMEOUT, 1 s) and they run concurrently.

    GET /healthz         liveness: 200 while the event loop answers; touches nothing else
    GET /readyz          readiness: 200 once PostgreSQL and Redis answer, else 503
    GET /health          the seed's {"status": "ok"}; "degraded" + 503 when a dependency fails, with a
                         `checks` object and, in development, `simulatorFallback` when the pipeline is
                         reading the built-in RPC simulator instead of the configured RPC
    GET /health/db       one check each; 200 or 503
    GET /health/redis
    GET /health/solana   slot and slot lag of each configured RPC URL
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from http_app.keys import DB_POOL, REDIS, SETTINGS
from stream_app.checks import Check, bounded, check_postgres, check_redis, check_solana, run_checks
from stream_app.rpc_fallback import read_fallback


async def _db(app: web.Application) -> Check:
    pool = app.get(DB_POOL)
    if pool is None:
        return Check("db", False, 0.0, error="no database pool (startup failed)")
    return await check_postgres(pool, app[SETTINGS].health_timeout)


async def _redis(app: web.Application) -> Check:
    redis = app.get(REDIS)
    if redis is None:
        return Check("redis", False, 0.0, error="no Redis client (startup failed)")
    return await check_redis(redis, app[SETTINGS].health_timeout)


class _Remembered:
    """The last Solana answer, reused for a few seconds: /health is public and unthrottled, and each
    check costs calls to the (often metered) RPC provider. Concurrent callers share one check."""

    def __init__(self) -> None:
        self.at = 0.0
        self.check: Check | None = None
        self.lock = asyncio.Lock()


SOLANA_TTL = 5.0
_SOLANA: web.AppKey[_Remembered] = web.AppKey("health_solana", _Remembered)


async def _solana(app: web.Application) -> Check:
    settings = app[SETTINGS]
    memo = app[_SOLANA]
    async with memo.lock:
        if memo.check is None or time.monotonic() - memo.at > SOLANA_TTL:
            memo.check = await check_solana(settings.solana_rpc_urls, settings.health_timeout)
            memo.at = time.monotonic()
        return memo.check


async def _fallback(app: web.Application) -> dict[str, Any] | None:
    redis = app.get(REDIS)
    if redis is None:
        return None
    settings = app[SETTINGS]

    async def probe() -> dict[str, Any]:
        return {"info": await read_fallback(redis, settings.redis_prefix)}

    check = await bounded("fallback", probe, settings.health_timeout)
    return check.detail.get("info") if check.ok else None


def _answer(body: dict[str, Any], ok: bool) -> web.Response:
    return web.json_response(body, status=200 if ok else 503, headers={"Cache-Control": "no-store"})


async def health(request: web.Request) -> web.Response:
    app = request.app
    fallback_task = asyncio.ensure_future(_fallback(app))
    checks = await run_checks({"db": _db(app), "redis": _redis(app), "solana": _solana(app)})
    fallback = await fallback_task
    body: dict[str, Any] = {"status": "ok", "checks": {name: c.to_dict() for name, c in checks.items()}}
    failed = [name for name, c in checks.items() if not c.ok]
    if fallback:
        # Development only: the configured RPC was unreachable, the pipeline reads the simulator instead.
        body["simulatorFallback"] = {k: fallback.get(k) for k in ("active", "url", "reason", "since")}
        body["checks"]["solana"]["source"] = "simulator"
        if "solana" in failed:
            failed.remove("solana")  # the pipeline keeps working; the fallback itself is reported above
    if failed:
        body["status"] = "degraded"
        body["failing"] = failed
    return _answer(body, not failed)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: web.Request) -> web.Response:
    checks = await run_checks({"db": _db(request.app), "redis": _redis(request.app)})
    ready = all(c.ok for c in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": {n: c.to_dict() for n, c in checks.items()}}
    return _answer(body, ready)


def _single(name: str) -> Any:
    probes = {"db": _db, "redis": _redis, "solana": _solana}

    async def handler(request: web.Request) -> web.Response:
        check = await probes[name](request.app)
        return _answer(check.to_dict(), check.ok)

    handler.__name__ = f"health_{name}"
    return handler


def setup_health(app: web.Application) -> None:
    app[_SOLANA] = _Remembered()
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    for name in ("db", "redis", "solana"):
        app.router.add_get(f"/health/{name}", _single(name))
