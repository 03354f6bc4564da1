"""The fetcher's counters, in process against the simulator: RPC failures by kind and run transitions
(failed, partial) move by exactly one per event."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY, generate_latest

from stream_app.fetcher import Fetcher
from stream_app.settings import Settings
from stream_app.sources.simulator.server import SimulatorHandle
from tests.ops.conftest import samples, value

pytestmark = pytest.mark.timeout(90)  # a hang fails this test instead of stalling the suite


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples(generate_latest(REGISTRY).decode())


async def produce(*_args: Any) -> None:
    return None


@pytest.mark.parametrize(("fault", "options", "kind"), [
    ("server_error", {"status": 503}, "unavailable"),
    ("malformed_json", {}, "malformed"),
    ("rpc_error", {"code": -32601}, "response"),
])
async def test_a_failed_fetch_counts_its_rpc_error_kind_and_one_failed_run(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: Any, simulator: SimulatorHandle,
    fault: str, options: dict[str, Any], kind: str,
) -> None:
    simulator.faults.add(fault, **options)
    fetcher = Fetcher(settings.with_overrides(rpc_max_retries=0, rpc_timeout=2.0), db_pool, redis_client, produce,
                      rpc_urls=[simulator.url])
    before = scrape()
    outcome = await fetcher.cycle("cli")
    after = scrape()
    assert outcome.status == "failed", outcome
    assert value(after, "solstake_rpc_errors_total", kind=kind) - value(before, "solstake_rpc_errors_total",
                                                                        kind=kind) == 1
    others = sum(value(after, "solstake_rpc_errors_total", kind=k) - value(before, "solstake_rpc_errors_total", kind=k)
                 for k in ("unavailable", "malformed", "stale", "too_large", "response", "other") if k != kind)
    assert others == 0
    assert (value(after, "solstake_scoring_runs_finished_total", status="failed")
            - value(before, "solstake_scoring_runs_finished_total", status="failed")) == 1
    assert await db_pool.fetchval("SELECT status FROM scoring_runs WHERE id = $1", outcome.run_id) == "failed"


async def test_overdue_runs_count_as_partial_or_failed(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: Any
) -> None:
    async with db_pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO scoring_runs (id, status, validator_count, run_date) VALUES "
            "('00000000-0000-0000-0000-00000000000a', 'running', 2, now() - interval '1 hour'), "
            "('00000000-0000-0000-0000-00000000000b', 'running', 2, now() - interval '1 hour')")
        vid = await conn.fetchval("INSERT INTO validators (vote_account, validator_pubkey) VALUES ('v', 'n') "
                                  "RETURNING id")
        await conn.execute("INSERT INTO trust_scores (validator_id, scoring_run_id, score, scoring_version) "
                           "VALUES ($1, '00000000-0000-0000-0000-00000000000a', 50, 'test')", vid)
    fetcher = Fetcher(settings.with_overrides(run_timeout=60.0), db_pool, redis_client, produce)
    before = scrape()
    closed = await fetcher.sweep()
    after = scrape()
    assert sorted(p.status for p in closed) == ["failed", "partial"]
    for status in ("partial", "failed"):
        assert (value(after, "solstake_scoring_runs_finished_total", status=status)
                - value(before, "solstake_scoring_runs_finished_total", status=status)) == 1, status
