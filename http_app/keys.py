"""Typed keys of the shared objects the web app keeps (settings, pools, caches, the GraphQL executor).

Every module reads them as `request.app[SETTINGS]` etc., so there is one place that names them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from stream_app.settings import Settings

if TYPE_CHECKING:
    from http_app.cache import ResponseCache
    from http_app.graphql.engine import Executor
    from http_app.graphql.live_hub import LiveHub

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
DB_POOL: web.AppKey[asyncpg.Pool] = web.AppKey("db_pool", asyncpg.Pool)
REDIS: web.AppKey[aioredis.Redis] = web.AppKey("redis", aioredis.Redis)
EXECUTOR: web.AppKey[Executor] = web.AppKey("graphql_executor")
CACHE: web.AppKey[ResponseCache] = web.AppKey("response_cache")
LIVE_HUB: web.AppKey[LiveHub] = web.AppKey("live_hub")
