"""The leader's fetch cycle in a child process (`stream_app.fetch_once`): real simulator, PostgreSQL, Redis."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from stream_app.app import RECORDS_TOPIC
from stream_app.fetch_process import ProcessFetcher
from stream_app.settings import Settings
from stream_app.sources.simulator.server import SimulatorHandle
from stream_app.stream_status import stream_status


def _fetcher(settings: Settings, db_pool: asyncpg.Pool, redis: aioredis.Redis, urls: list[str]) -> ProcessFetcher:
    settings = settings.with_overrides(rpc_max_retries=0, rpc_timeout=3.0, stream_partitions=2)
    assert settings.database_url and settings.redis_url
    return ProcessFetcher(settings, db_pool, redis, database_url=settings.database_url,
                          redis_url=settings.redis_url, rpc_urls=urls)


async def test_a_child_cycle_opens_the_run_produces_every_record_and_returns_the_source_state(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, simulator: SimulatorHandle
) -> None:
    fetcher = _fetcher(settings, db_pool, redis_client, [simulator.url])
    outcome = await fetcher.cycle("cli", actor="tester")
    assert outcome.status == "running" and outcome.expected > 0, outcome
    row = await db_pool.fetchrow("SELECT * FROM scoring_runs WHERE id = $1", outcome.run_id)
    assert (row["status"], row["validator_count"], row["trigger"]) == ("running", outcome.expected, "cli")
    status = await stream_status(redis_client, settings.redis_prefix)
    produced = sum(p.highwater for p in status.partitions if p.topic == RECORDS_TOPIC)
    assert produced == outcome.expected + 2  # one header per partition
    assert fetcher.source_state.highest_slot > 0  # what the child learnt comes back for the next cycle


async def test_a_failed_fetch_in_the_child_is_a_failed_run(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    fetcher = _fetcher(settings, db_pool, redis_client, ["http://127.0.0.1:9/"])
    outcome = await fetcher.cycle("timer")
    assert outcome.status == "failed" and "fetch failed" in (outcome.error or "")
    row = await db_pool.fetchrow("SELECT status, error FROM scoring_runs WHERE id = $1", outcome.run_id)
    assert row["status"] == "failed" and "fetch failed" in row["error"]


async def test_a_child_that_dies_without_a_report_is_recorded_as_a_failed_run(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, simulator: SimulatorHandle
) -> None:
    class Broken(ProcessFetcher):
        def child_env(self) -> dict[str, str]:
            return dict(super().child_env(), STREAM_PARTITIONS="not-a-number")  # the child exits at start

    fetcher = _fetcher(settings, db_pool, redis_client, [simulator.url])
    fetcher.__class__ = Broken
    outcome = await fetcher.cycle("timer")
    assert outcome.status == "failed" and "fetch process exited with status" in (outcome.error or "")
    row = await db_pool.fetchrow("SELECT status, error FROM scoring_runs WHERE id = $1", outcome.run_id)
    assert row["status"] == "failed" and "fetch process exited" in row["error"]
