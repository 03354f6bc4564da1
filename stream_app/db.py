"""The asyncpg pool both apps use: JSON codecs registered once, timeouts from settings."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from stream_app.settings import Settings


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def create_pool(dsn: str, settings: Settings | None = None, **overrides: Any) -> asyncpg.Pool:
    settings = settings or Settings.from_env()
    options: dict[str, Any] = {
        "min_size": settings.db_pool_min,
        "max_size": settings.db_pool_max,
        "command_timeout": settings.db_command_timeout,
        "init": _init_connection,
    }
    options.update(overrides)
    pool = await asyncpg.create_pool(dsn, **options)
    assert pool is not None
    return pool
