"""Item 8: RPC faults during fetches, through a real worker process (simulator over HTTP, PostgreSQL, Redis).

Every run either completes with the same scores a clean run of the same (frozen) cluster gets, or is marked
failed with the fault in its reason and stores no score at all. Per-entry corruption never becomes a score.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from stream_app.fetcher import request_fetch
from stream_app.settings import Settings
from stream_app.sources.simulator.server import start_simulator
from tests.resilience.helpers import finished_run, run_failures, run_scores, start_worker, wait_for, worker_env

VALIDATORS = 40


@pytest.mark.timeout(180)
async def test_rpc_faults_make_failed_runs_with_reasons_and_never_a_wrong_score(
    settings: Settings, database_url: str, redis_url: str, redis_client: aioredis.Redis, db_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    sim = await start_simulator(0, seed=752, validators=VALIDATORS, epoch_seconds=0)
    env = worker_env(settings, database_url, redis_url, sim.url, RPC_MAX_RETRIES="2", RPC_TIMEOUT="1.0")
    worker = start_worker("worker", env, tmp_path)
    prefix = settings.redis_prefix

    async def run(**fault: object) -> asyncpg.Record:
        sim.faults.clear()
        if fault:
            sim.faults.add(**fault)  # type: ignore[arg-type]
        run_id = await request_fetch(redis_client, prefix, trigger="cli", actor="faults")
        row: asyncpg.Record = await wait_for(lambda: finished_run(db_pool, run_id), f"run under {fault or 'no fault'}",
                                             60, [worker])
        return row

    try:
        first = await wait_for(lambda: finished_run(db_pool, None), "the first (timer) run", 90, [worker])
        assert first["status"] == "completed", dict(first)
        clean = await run()
        assert (clean["status"], clean["success_count"], clean["fail_count"]) == ("completed", VALIDATORS, 0)
        baseline = await run_scores(db_pool, clean["id"])
        assert len(baseline) == VALIDATORS
        assert baseline == await run_scores(db_pool, first["id"])  # same frozen cluster, same scores

        # A short 429 storm (Retry-After honoured) and a server error burst are absorbed by the retries:
        # the runs complete with exactly the clean scores.
        absorbed: tuple[dict[str, Any], ...] = (
            {"kind": "rate_limit", "methods": ["getVoteAccounts"], "times": 2, "retry_after": 0.2},
            {"kind": "server_error", "status": 503, "times": 2})
        for fault in absorbed:
            row = await run(**fault)
            assert (row["status"], row["success_count"], row["fail_count"]) == ("completed", VALIDATORS, 0), fault
            assert await run_scores(db_pool, row["id"]) == baseline, fault

        # Faults that outlast the retries: a failed run naming the cause, and not one score stored for it.
        failing: tuple[tuple[dict[str, Any], str], ...] = (
            ({"kind": "rate_limit", "retry_after": 0.2}, "429"),
            ({"kind": "timeout", "methods": ["getVoteAccounts"], "delay": 5.0}, "no answer within"),
            ({"kind": "malformed_json", "methods": ["getVoteAccounts"]}, "RpcMalformed"),
            ({"kind": "truncate", "methods": ["getEpochInfo"]}, "RpcMalformed"),
            ({"kind": "wrong_types", "methods": ["getEpochInfo"]}, "RecordError"),
            ({"kind": "rpc_error", "code": -32005}, "-32005"),
        )
        for fault, reason in failing:
            row = await run(**fault)
            assert row["status"] == "failed", (fault, dict(row))
            assert reason.lower() in (row["error"] or "").lower(), (fault, row["error"])
            assert await run_scores(db_pool, row["id"]) == {} and await run_failures(db_pool, row["id"]) == {}

        # Per-entry corruption (a wrong-typed activatedStake on every 8th vote account): those accounts get no
        # score in the run and keep their last good one; the rest are scored (against this run's cluster
        # totals, which lack the corrupted accounts' stake, so not bit-identical to the clean run).
        row = await run(kind="wrong_types", methods=["getVoteAccounts"], every=8)
        scores = await run_scores(db_pool, row["id"])
        corrupted = set(baseline) - set(scores)
        assert row["status"] == "completed" and set(scores) < set(baseline) and corrupted, dict(row)
        latest = {r[0]: r[1] for r in await db_pool.fetch("SELECT vote_account, latest_score FROM validators")}
        assert {v: latest[v] for v in corrupted} == {v: baseline[v] for v in corrupted}
        assert all(abs(baseline[v] - score) < 0.5 for v, score in scores.items())

        # Faults gone: the next run is whole and scores exactly as before (no state was poisoned).
        after = await run()
        assert (after["status"], after["success_count"]) == ("completed", VALIDATORS)
        assert await run_scores(db_pool, after["id"]) == baseline
        runs = await db_pool.fetch("SELECT status, count(*) AS n FROM scoring_runs GROUP BY status")
        assert {r["status"]: r["n"] for r in runs} == {"completed": 6, "failed": 6}, corrupted
    finally:
        worker.signal(signal.SIGTERM)
        worker.stop(30)
        await sim.close()


async def test_vote_accounts_dropped_by_the_parser_are_counted_as_failures_of_the_run(
    settings: Settings, db_pool: asyncpg.Pool, redis_client: aioredis.Redis,
) -> None:
    from stream_app.fetcher import Fetcher

    sim = await start_simulator(0, seed=752, validators=VALIDATORS, epoch_seconds=0)
    produced: list[int] = []

    async def produce(header: object, context: object, records: list[object]) -> None:
        produced.append(len(records))

    try:
        fetcher = Fetcher(settings.with_overrides(rpc_max_retries=0), db_pool, redis_client, produce,  # type: ignore[arg-type]
                          rpc_urls=[sim.url])
        sim.faults.add("wrong_types", methods=["getVoteAccounts"], every=8)
        outcome = await fetcher.cycle("cli")
        assert produced and produced[0] < VALIDATORS  # the corrupted accounts were left out
        row = await db_pool.fetchrow("SELECT * FROM scoring_runs WHERE id = $1", outcome.run_id)
        failures = await run_failures(db_pool, outcome.run_id)
        # The run must say that it did not cover the whole cluster: counted failures (or a partial status).
        assert row["validator_count"] == VALIDATORS, dict(row)
        assert len(failures) == VALIDATORS - produced[0]
        assert all("unusable RPC data" in reason for reason in failures.values())
    finally:
        await sim.close()
