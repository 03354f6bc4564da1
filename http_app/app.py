"""The web application: `create_app(settings)` wires middlewares, routes and shared resources.

Request steps (outermost first) — keep the order when adding more:
    1. request id + error masking        (http_app.errors)
    2. RED metrics                        (http_app.metrics)
    3. rate limit                         (access control: http_app.ratelimit)
    4. authentication → request["principal"]  (access control: http_app.auth)
    5. handlers
Steps 1-4 run in one middleware, `http_app.front.front_door` (one frame per request instead of three).
Security headers and CORS are response signals / router wrappers (http_app.security), not middlewares.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Middleware

from http_app.access import install_access_control, setup_cors
from http_app.cache import ResponseCache, setup_cache_routes
from http_app.front import front_door
from http_app.graphql.engine import create_executor
from http_app.graphql.fanout import SHARED, SharedSubscriptions
from http_app.graphql.http import install_renderer
from http_app.graphql.live_hub import LiveHub
from http_app.graphql.routes import setup_graphql
from http_app.health import setup_health
from http_app.keys import CACHE, DB_POOL, EXECUTOR, LIVE_HUB, REDIS, SETTINGS
from http_app.metrics import setup_metrics
from stream_app.cancelling import cancel_and_wait
from stream_app.db import create_pool
from stream_app.settings import Settings

log = logging.getLogger("http_app")

# The largest request body any route accepts; GraphQL enforces its own, smaller limit.
CLIENT_MAX_SIZE = 1024 * 1024


def _middlewares() -> list[Middleware]:
    return [front_door]  # steps 1-4 above


def create_app(settings: Settings, *, schema_name: str = "solstake") -> web.Application:
    """Build the app. `schema_name` keys the Tartiflette engine: apps in one process need distinct names."""
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError("create_app needs DATABASE_URL and REDIS_URL (python -m http_app resolves them)")
    app = web.Application(middlewares=_middlewares(), client_max_size=CLIENT_MAX_SIZE)
    app[SETTINGS] = settings
    app[EXECUTOR] = create_executor(schema_name)
    app.cleanup_ctx.append(_backing_services)
    app.cleanup_ctx.append(_live_updates)

    install_access_control(app, settings)  # also adds /auth/* routes and security headers
    setup_health(app)
    setup_metrics(app, middleware=False)  # front_door records RED
    setup_cache_routes(app)
    setup_graphql(app)
    # --- REST routes of other areas are added here ---
    setup_cors(app, settings)  # last: CORS is enabled per existing resource
    return app


async def _backing_services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url is not None and settings.redis_url is not None
    app[DB_POOL] = await _database_pool(settings)
    # Short timeouts: a dead Redis must cost a request milliseconds, not seconds (the cache is bypassed).
    app[REDIS] = aioredis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    app[CACHE] = ResponseCache(app[REDIS], settings)
    install_renderer(app, app[CACHE])
    await app[EXECUTOR].start()
    yield
    await app[REDIS].aclose()
    await app[DB_POOL].close()


async def _database_pool(settings: Settings) -> asyncpg.Pool:
    """The pool; if PostgreSQL is down at start, a lazy one: the app serves (cache, errors with
    SERVICE_UNAVAILABLE, /health says so) and connects by itself once the database is back."""
    assert settings.database_url is not None
    try:
        return await create_pool(settings.database_url, settings)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.error("PostgreSQL unavailable at start (%s); serving degraded until it answers", exc)
        return await create_pool(settings.database_url, settings, min_size=0)


async def _live_updates(app: web.Application) -> AsyncIterator[None]:
    """Tail the live stream: invalidate and re-warm the cache, feed subscriptions."""
    hub = LiveHub(app)
    app[LIVE_HUB] = hub
    app[SHARED] = SharedSubscriptions(app)
    task = asyncio.create_task(hub.run(), name="live-hub")
    yield
    await cancel_and_wait(task)  # a plain cancel can be lost inside redis-py on Python 3.11
    await hub.close()
