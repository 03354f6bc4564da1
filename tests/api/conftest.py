"""API fixtures: the real app (create_app) on this test's database and Redis prefix, plus callers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from http_app.app import create_app
from http_app.graphql.ws import WS_OPTIONS, WsOptions
from stream_app.settings import Settings
from tests.api.seed import Seeded, seed

ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def seeded(db_pool: asyncpg.Pool) -> Seeded:
    return await seed(db_pool, validators=20, runs=2, users=2)


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    # API tests send many requests: the rate limiter is tested by access control, not here.
    return settings.with_overrides(rate_limit=1_000_000)


@pytest.fixture
async def api(aiohttp_client: Any, api_settings: Settings) -> AsyncIterator[TestClient]:
    client: TestClient = await aiohttp_client(create_app(api_settings))
    yield client


@pytest.fixture
def make_api(aiohttp_client: Any, api_settings: Settings) -> ClientFactory:
    """`await make_api(ws_options=..., **settings_overrides)`: a client of an app built for this test."""

    async def make(ws_options: WsOptions | None = None, **overrides: Any) -> TestClient:
        app = create_app(api_settings.with_overrides(**overrides))
        if ws_options is not None:
            app[WS_OPTIONS] = ws_options
        client: TestClient = await aiohttp_client(app)
        return client

    return make


def bearer(settings: Settings, role: str, user_id: str = "1", wallet: str | None = None) -> dict[str, str]:
    """An Authorization header with an access token minted by the access-control issue's own code."""
    from http_app.tokens import Identity, Keyring, issue_access_token

    identity = Identity(user_id=user_id, role=role, email=f"{role}@example.com", wallet_pubkey=wallet)
    return {"Authorization": "Bearer " + issue_access_token(Keyring.from_settings(settings), identity)}


async def gql(client: TestClient, query: str, variables: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers or {})
    return resp.status, await resp.json(content_type=None)
