"""API fixtures: the real app (create_app) on this test's database and Redis prefix, plus callers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp.test_utils import TestClient

from http_app.app import create_app
from stream_app.settings import Settings
from tests.api.seed import Seeded, seed

ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def seeded(db_pool: asyncpg.Pool) -> Seeded:
    return await seed(db_pool, validators=20, runs=2, users=2)


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings) -> AsyncIterator[TestClient]:
    client: TestClient = await aiohttp_client(create_app(settings))
    yield client


def token_for(settings: Settings, role: str, user_id: str = "1", wallet: str | None = None) -> str:
    """A token as the access-control issue's /auth routes mint them (used once auth is installed)."""
    from http_app.principal import ROLE_PERMISSIONS

    claims = {"sub": user_id, "userId": user_id, "role": role, "permissions": sorted(ROLE_PERMISSIONS[role]),
              "wallet": wallet, "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "typ": "access"}
    assert settings.jwt_secret
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


async def gql(client: TestClient, query: str, variables: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers or {})
    return resp.status, await resp.json(content_type=None)
