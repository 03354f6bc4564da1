"""Fixtures of the access-control tests: a small app with the real middlewares on real Redis/PostgreSQL."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Middleware

from http_app.access import access_middlewares, install_access_control, setup_cors
from http_app.auth import PRINCIPAL
from http_app.keys import DB_POOL, REDIS, SETTINGS
from http_app.principal import Principal
from http_app.ratelimit import CACHE_KEY_HOOK, PREFETCHED_CACHE
from http_app.tokens import Identity, Keyring, issue_access_token
from stream_app.db import create_pool
from stream_app.embedded import EmbeddedRedis
from stream_app.settings import Settings

AppFactory = Callable[..., Awaitable[TestClient]]


async def whoami(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    return web.json_response({
        "userId": principal.user_id,
        "role": principal.role,
        "permissions": sorted(principal.permissions),
        "wallet": principal.wallet_pubkey,
    })


async def prefetched(request: web.Request) -> web.Response:
    """What the limiter's round trip found under this request's cache key (the API's cache hit path)."""
    if PREFETCHED_CACHE not in request:
        return web.json_response({"prefetched": "not looked up"})
    body = request[PREFETCHED_CACHE]
    return web.json_response({"prefetched": None if body is None else body.decode()})


async def cache_key_for(request: web.Request, principal: Principal) -> str | None:
    if request.path != "/prefetched":
        return None
    return f"{request.app[SETTINGS].redis_prefix}:cache:{principal.scope}"


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(settings: Settings, middlewares: list[Middleware] | None = None) -> web.Application:
    """What create_app does for access control, with probe handlers instead of the API."""
    app = web.Application(middlewares=access_middlewares() if middlewares is None else middlewares)
    app[SETTINGS] = settings

    async def backing(app: web.Application) -> AsyncIterator[None]:
        assert settings.database_url and settings.redis_url
        app[DB_POOL] = await create_pool(settings.database_url, settings, min_size=1, max_size=4)
        app[REDIS] = aioredis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        yield
        await app[REDIS].aclose()
        await app[DB_POOL].close()

    app.cleanup_ctx.append(backing)
    install_access_control(app, settings)
    app.router.add_get("/whoami", whoami)
    app.router.add_post("/whoami", whoami)
    app.router.add_get("/health", health)
    app.router.add_get("/prefetched", prefetched)
    app[CACHE_KEY_HOOK] = cache_key_for
    setup_cors(app, settings)
    return app


@pytest.fixture
async def make_client(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient]], settings: Settings
) -> AppFactory:
    """`await make_client(RATE_LIMIT=3, ...)`: a test client of an app whose settings are overridden."""

    async def make(middlewares: list[Middleware] | None = None, **overrides: object) -> TestClient:
        changed = settings.with_overrides(**{k.lower(): v for k, v in overrides.items()})
        return await aiohttp_client(build_app(changed, middlewares))

    return make


@pytest.fixture
def keyring(settings: Settings) -> Keyring:
    return Keyring.from_settings(settings)


@pytest.fixture
def token_for(keyring: Keyring) -> Callable[[str], str]:
    def make(role: str, user_id: str = "42") -> str:
        return issue_access_token(keyring, Identity(user_id=user_id, role=role, email=f"{role}@example.com"))

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path: Path) -> EmbeddedRedis:
    """A Redis server only this test uses, so it can be stopped to test 'Redis down'."""
    server = EmbeddedRedis(root=tmp_path, port=free_port(), appendonly=False)
    server.start()
    yield server  # type: ignore[misc]
    server.stop()
