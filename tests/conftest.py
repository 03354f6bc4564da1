"""Fixtures on real servers.

PostgreSQL and Redis come from `DATABASE_URL` / `REDIS_URL` when set, otherwise from embedded servers that
this session starts under `.solstake/test/` (and reuses on the next run). Every test gets its own database,
cloned from a migrated template, and its own Redis key prefix, so tests run in any order.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from migrations import discover, migrate
from stream_app.embedded import EmbeddedServices
from stream_app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data" / "solana-mainnet"
TEST_JWT_SECRET = "test-secret-" + "x" * 40


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


class Services:
    def __init__(self) -> None:
        self.embedded = EmbeddedServices(Path(os.environ.get("SOLSTAKE_TEST_DATA_DIR", ROOT / ".solstake" / "test")))
        self.database_url = os.environ.get("DATABASE_URL") or self.embedded.start_postgres()
        self.redis_url = os.environ.get("REDIS_URL") or self.embedded.start_redis()
        self.template = ""

    def stop(self) -> None:
        self.embedded.stop()


async def _build_template(admin_dsn: str) -> str:
    """A migrated template database, named after the migrations' checksums so edits rebuild it."""
    import hashlib

    digest = hashlib.sha256("".join(m.checksum for m in discover()).encode()).hexdigest()[:12]
    name = f"solstake_tpl_{digest}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            building = f"{name}_building_{os.getpid()}"
            await conn.execute(f'DROP DATABASE IF EXISTS "{building}"')
            await conn.execute(f'CREATE DATABASE "{building}"')
            await migrate(with_database(admin_dsn, building))
            try:
                await conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            except asyncpg.DuplicateDatabaseError:  # another session won the race
                await conn.execute(f'DROP DATABASE "{building}"')
    finally:
        await conn.close()
    return name


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    svc = Services()
    svc.template = asyncio.run(_build_template(svc.database_url))
    yield svc
    svc.stop()


@pytest.fixture
async def database_url(services: Services) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(services.database_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{services.template}"')
    finally:
        await conn.close()
    yield with_database(services.database_url, name)
    conn = await asyncpg.connect(services.database_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    from stream_app.db import create_pool

    pool = await create_pool(database_url, Settings.from_env({}), min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
def redis_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_url(services: Services) -> str:
    return services.redis_url


@pytest.fixture
async def redis_client(redis_url: str, redis_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client whose test-owned keys (`<prefix>*`) are deleted afterwards."""
    client = aioredis.from_url(redis_url)
    yield client
    async for key in client.scan_iter(match=f"{redis_prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str) -> Settings:
    """Settings pointing at this test's database and key prefix."""
    return Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": redis_prefix,
            "JWT_SECRET": TEST_JWT_SECRET,
            "SIMULATOR_FALLBACK": "false",
        }
    )
