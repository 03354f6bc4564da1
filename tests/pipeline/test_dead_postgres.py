"""A PostgreSQL that refuses connections in the middle of a write: the batch is retried, nothing is lost."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import pytest

from stream_app.agents import Pipeline
from stream_app.app import create_stream_app
from stream_app.runs import open_run
from stream_app.settings import Settings
from tests.pipeline.factories import header, new_run_id, score_event


@pytest.mark.timeout(60)
async def test_a_batch_written_while_postgres_refuses_connections_lands_once_it_is_back(
    settings: Settings, database_url: str, redis_url: str, services: object, db_pool: asyncpg.Pool
) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(services.database_url)  # type: ignore[attr-defined]
    run = new_run_id()
    async with db_pool.acquire() as conn:
        await open_run(conn, header(run, 50))
    pipeline = Pipeline(settings.with_overrides(db_command_timeout=5.0), database_url, redis_url,
                        create_stream_app(settings, redis_url))
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        write = asyncio.ensure_future(pipeline.persist_until_done([score_event(run, i) for i in range(50)]))
        await asyncio.sleep(1.5)
        assert not write.done()  # retrying, not given up and not silently dropped
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        result = await asyncio.wait_for(write, 30)
        assert result.stored == 50
        row = await db_pool.fetchrow("SELECT status, success_count FROM scoring_runs WHERE id = $1", run)
        assert (row["status"], row["success_count"]) == ("completed", 50)
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await pipeline.close()
