"""The fetcher against the RPC simulator (real HTTP), real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import orjson
import redis.asyncio as aioredis

from stream_app import live
from stream_app.contexts import ContextCache
from stream_app.fetcher import Fetcher, FetchRequest, request_fetch, requests_key
from stream_app.records import ClusterContext, RunHeader, ValidatorRecord
from stream_app.rpc_fallback import record_fallback
from stream_app.settings import Settings
from stream_app.sources.simulator.server import SimulatorHandle


class Collected:
    """The produce side of a cycle, kept in a list (the Faust topic's place in these tests)."""

    def __init__(self) -> None:
        self.runs: list[tuple[RunHeader, ClusterContext, list[ValidatorRecord]]] = []

    async def __call__(self, header: RunHeader, context: ClusterContext, records: Sequence[ValidatorRecord]) -> None:
        self.runs.append((header, context, list(records)))


def _fetcher(settings: Settings, db_pool: asyncpg.Pool, redis: aioredis.Redis, sim: SimulatorHandle,
             produced: Collected, **overrides: object) -> Fetcher:
    settings = settings.with_overrides(rpc_max_retries=0, rpc_timeout=3.0, **overrides)
    return Fetcher(settings, db_pool, redis, produced, rpc_urls=[sim.url])


async def _live_events(redis: aioredis.Redis, prefix: str) -> list[dict[str, object]]:
    return [e for _id, f in await redis.xrange(live.stream_key(prefix)) if (e := live.decode_entry(f))]


async def test_a_cycle_opens_a_run_and_produces_one_record_per_vote_account(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, simulator: SimulatorHandle
) -> None:
    produced = Collected()
    fetcher = _fetcher(settings, db_pool, redis_client, simulator, produced)
    outcome = await fetcher.tick()
    assert outcome is not None and outcome.status == "running"
    [(header, context, records)] = produced.runs
    assert header.run_id == outcome.run_id and header.expected_count == len(records) == outcome.expected > 0
    assert {r.run_id for r in records} == {header.run_id}
    assert len({r.vote_pubkey for r in records}) == len(records)
    assert context.run_id == header.run_id and context.validator_count == len(records)
    row = await db_pool.fetchrow("SELECT * FROM scoring_runs WHERE id = $1", header.run_id)
    assert (row["status"], row["validator_count"], row["trigger"]) == ("running", len(records), "timer")
    assert row["source"] == simulator.url and row["cluster_context"]["run_id"] == header.run_id
    cached = await ContextCache(redis_client, settings.redis_prefix).get(header.run_id)
    assert cached == context
    events = await _live_events(redis_client, settings.redis_prefix)
    assert events == [{"type": "run", "run_id": header.run_id, "status": "running", "success_count": 0,
                       "fail_count": 0, "validator_count": len(records)}]
    assert await fetcher.tick() is None  # not due again within the interval


async def test_rpc_down_is_a_failed_run_with_its_reason_and_the_next_due_tick_retries(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, simulator: SimulatorHandle
) -> None:
    produced = Collected()
    fetcher = _fetcher(settings, db_pool, redis_client, simulator, produced, fetch_interval=0.05)
    simulator.faults.add("server_error", status=503)
    failed = await fetcher.tick()
    assert failed is not None and failed.status == "failed" and "503" in (failed.error or "")
    row = await db_pool.fetchrow("SELECT status, error, completed_at FROM scoring_runs WHERE id = $1", failed.run_id)
    assert row["status"] == "failed" and "503" in row["error"] and row["completed_at"] is not None
    assert produced.runs == []
    simulator.faults.clear()
    await asyncio.sleep(0.1)  # the next tick after the (tiny) interval
    retried = await fetcher.tick()
    assert retried is not None and retried.status == "running" and retried.run_id != failed.run_id
    statuses = [e["status"] for e in await _live_events(redis_client, settings.redis_prefix)]
    assert statuses == ["failed", "running"]


async def test_malformed_rpc_data_fails_the_run_without_producing(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, simulator: SimulatorHandle
) -> None:
    produced = Collected()
    fetcher = _fetcher(settings, db_pool, redis_client, simulator, produced)
    simulator.faults.add("malformed_json", methods=["getVoteAccounts"])
    outcome = await fetcher.cycle("cli")
    assert outcome.status == "failed" and produced.runs == []
    assert await db_pool.fetchval("SELECT status FROM scoring_runs WHERE id = $1", outcome.run_id) == "failed"


async def test_a_cli_request_is_served_by_the_next_tick_with_its_run_id(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, simulator: SimulatorHandle
) -> None:
    produced = Collected()
    fetcher = _fetcher(settings, db_pool, redis_client, simulator, produced, fetch_interval=3600.0)
    await fetcher.cycle("timer")  # a recent timer run: only the request makes the next tick fetch
    run_id = await request_fetch(redis_client, settings.redis_prefix, trigger="cli", actor="alice")
    await redis_client.lpush(requests_key(settings.redis_prefix), b"{not json")
    outcome = await fetcher.tick()
    assert outcome is not None and outcome.run_id == run_id
    row = await db_pool.fetchrow("SELECT trigger FROM scoring_runs WHERE id = $1", run_id)
    assert row["trigger"] == "cli"
    actor = await db_pool.fetchval(
        "SELECT actor_id FROM audit_log WHERE action = 'scoring_run.started' AND metadata->>'run_id' = $1", run_id)
    assert actor == "alice"
    assert await fetcher.tick() is None  # the malformed request is dropped with a log line, not retried forever
    assert await redis_client.llen(requests_key(settings.redis_prefix)) == 0


async def test_runs_through_the_simulator_fallback_say_so(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, simulator: SimulatorHandle
) -> None:
    await record_fallback(redis_client, settings.redis_prefix, url=simulator.url, configured=["https://x"],
                          reason="unreachable")
    produced = Collected()
    outcome = await _fetcher(settings, db_pool, redis_client, simulator, produced).cycle("timer")
    assert await db_pool.fetchval("SELECT source FROM scoring_runs WHERE id = $1", outcome.run_id) == "simulator"
    assert produced.runs[0][0].source == "simulator"


def test_fetch_requests_round_trip_and_reject_garbage() -> None:
    request = FetchRequest("6f1c1f5e-9d7e-4c55-8a43-1f0c1e7b1a01", "admin", "bob", 12.5)
    assert FetchRequest.decode(request.encode()) == request
    for bad in (b"", b"[]", b'{"run_id": "x", "trigger": "cli", "requested_at": 1}',
                orjson.dumps({"run_id": request.run_id, "trigger": "cron", "requested_at": 1})):
        assert FetchRequest.decode(bad) is None
