"""Simulator + two real worker processes + PostgreSQL + Redis: runs pass through, a worker is SIGKILLed
during a run and restarted, and every validator of every run is scored exactly once."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import asyncpg
import pytest
import redis.asyncio as aioredis

from stream_app.app import RECORDS_TOPIC
from stream_app.fetcher import request_fetch
from stream_app.settings import Settings
from stream_app.sources.simulator.server import start_simulator
from stream_app.stream_status import stream_status
from stream_app.streamstats import read_snapshot
from stream_app.transport.keys import KeySpace
from stream_app.verify import verify_database
from tests.pipeline import processes
from tests.pipeline.processes import Proc

VALIDATORS = 800
PARTITIONS = 4


async def _wait(predicate: Callable[[], object], what: str, seconds: float, procs: list[Proc]) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await predicate()  # type: ignore[misc]
        if value:
            return value
        await asyncio.sleep(0.1)
    logs = "\n".join(p.tail() for p in procs)
    raise AssertionError(f"timed out after {seconds:g} s waiting for {what}\n{logs}")


def _pid_of(member: str) -> int:
    """The pid in a group member id (`<host>-<pid>-<random>`)."""
    return int(member.rsplit("-", 2)[1])


async def _fetcher_pid(redis: aioredis.Redis, prefix: str) -> int | None:
    """pid of the worker holding the Faust leader partition (the one running the fetch timer)."""
    owners = await redis.hgetall(KeySpace(prefix).group("solstake").owners)
    for field, member in owners.items():
        if field.decode().startswith("solstake-__assignor-__leader:"):
            return _pid_of(member.decode())
    return None


async def _record_owners(redis: aioredis.Redis, prefix: str) -> set[int]:
    """pids of the workers owning a partition of the records topic."""
    snapshot = await read_snapshot(redis, prefix)
    return {_pid_of(p.owner) for g in snapshot.groups for p in g.partitions
            if p.topic == RECORDS_TOPIC and p.owner}


async def _writers_held(db_pool: asyncpg.Pool, redis: aioredis.Redis, prefix: str) -> set[int] | None:
    """pids of the workers owning a partition of the records topic, once as many sessions wait to write
    trust_scores as there are such workers (each worker writes its batches one at a time)."""
    owners = await _record_owners(redis, prefix)
    waiting = await db_pool.fetchval(
        "SELECT count(DISTINCT pid) FROM pg_locks WHERE relation = 'trust_scores'::regclass AND NOT granted")
    return owners if owners and waiting >= len(owners) else None


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_runs_are_scored_exactly_once_across_worker_kills(
    settings: Settings, database_url: str, redis_url: str, redis_client: aioredis.Redis, db_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    sim = await start_simulator(0, seed=752, validators=VALIDATORS, epoch_seconds=0)
    prefix = settings.redis_prefix
    env = processes.base_env(DATABASE_URL=database_url, REDIS_URL=redis_url, REDIS_PREFIX=prefix,
                             SOLANA_RPC_URL=sim.url, FETCH_INTERVAL="3600", RUN_TIMEOUT="600",
                             STREAM_PARTITIONS=str(PARTITIONS))
    workers = {name: processes.worker(name, env, tmp_path) for name in ("w1", "w2")}
    everyone = list(workers.values())

    async def run_row(run_id: str) -> asyncpg.Record | None:
        return await db_pool.fetchrow("SELECT * FROM scoring_runs WHERE id = $1", run_id)

    async def finished(run_id: str) -> asyncpg.Record | None:
        row = await run_row(run_id)
        return row if row is not None and row["status"] != "running" else None

    async def _both_own(pids: set[int]) -> bool:
        return await _record_owners(redis_client, prefix) == pids

    async def produced(expected: int) -> bool:
        status = await stream_status(redis_client, prefix)
        return sum(p.highwater for p in status.partitions if p.topic == RECORDS_TOPIC) >= expected

    try:
        # Run 1: the leader's timer fetches as soon as the group is up (no timer run yet).
        first = await _wait(lambda: db_pool.fetchval("SELECT id::text FROM scoring_runs LIMIT 1"),
                            "the first timer run", 90, everyone)
        await _wait(lambda: finished(first), "run 1 to finish", 60, everyone)
        records_per_run = VALIDATORS + PARTITIONS  # one header per partition

        # Run 1 can be scored by the first worker alone before the second has joined the group (~6 s after
        # start): run 2 needs both holding partitions of the records topic, or the victim has nothing to write.
        pids = {p.pid for p in workers.values()}
        await _wait(lambda: _both_own(pids), "both workers to own records partitions", 60, everyone)

        # Run 2: SIGKILL a worker that is not the fetcher while its scores are being written; restart it.
        # A lock on trust_scores holds every write of the run at its merge, so the kill lands mid-write (records
        # read and scored, nothing committed) however fast the pipeline is: run 2's 800 records took ~0.2 s,
        # less than this test's polling interval, once the worker got faster.
        async with db_pool.acquire() as blocker, blocker.transaction():
            await blocker.execute("LOCK TABLE trust_scores IN EXCLUSIVE MODE")  # reads pass, writes wait
            second = await request_fetch(redis_client, prefix, trigger="cli", actor="e2e")
            writers = cast(set[int], await _wait(lambda: _writers_held(db_pool, redis_client, prefix),
                                                 "run 2's writers to wait", 60, everyone))
            fetcher = await _fetcher_pid(redis_client, prefix)
            victim = next(n for n, p in workers.items() if p.pid != fetcher)
            assert workers[victim].pid in writers  # it holds records of run 2, scored and not committed
            workers[victim].kill()
            row = await run_row(second)
            assert row is not None and row["status"] == "running" and row["success_count"] == 0
        workers[victim] = processes.worker(f"{victim}-restarted", env, tmp_path)
        everyone.append(workers[victim])
        await _wait(lambda: finished(second), "run 2 to finish after the kill", 90, everyone)

        # Run 3, asked for through the CLI: SIGKILL the fetching worker itself once its records are on the
        # stream; restart it. `solstake fetch --wait` reports the run's outcome.
        cli_env = dict(env, REDIS_PREFIX=prefix)
        fetch = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream_app.cli", "fetch", "--wait", "150", "--actor", "e2e-cli", env=cli_env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert fetch.stdout is not None
        requested = (await asyncio.wait_for(fetch.stdout.readline(), 60)).decode()
        third = re.search(r"fetch requested: run (\S+)", requested)[1]  # type: ignore[index]
        await _wait(lambda: produced(3 * records_per_run), "run 3 records on the stream", 60, everyone)
        fetcher = await _fetcher_pid(redis_client, prefix)
        victim = next((n for n, p in workers.items() if p.pid == fetcher), "w1")
        workers[victim].kill()
        workers[victim] = processes.worker(f"{victim}-restarted-2", env, tmp_path)
        everyone.append(workers[victim])
        await _wait(lambda: finished(third), "run 3 to finish after the kill", 90, everyone)

        fetch_out, _ = await asyncio.wait_for(fetch.communicate(), 60)
        assert fetch.returncode == 0 and f"run {third}: completed, {VALIDATORS} scored" in fetch_out.decode()
        runs = [await run_row(r) for r in (first, second, third)]
        for row in runs:
            assert row is not None
            assert (row["status"], row["validator_count"], row["success_count"], row["fail_count"]) == (
                "completed", VALIDATORS, VALIDATORS, 0), dict(row)
            scored = await db_pool.fetchval(
                "SELECT count(DISTINCT validator_id) FROM trust_scores WHERE scoring_run_id = $1", row["id"])
            rows = await db_pool.fetchval("SELECT count(*) FROM trust_scores WHERE scoring_run_id = $1", row["id"])
            assert scored == rows == VALIDATORS
        assert await db_pool.fetchval("SELECT count(*) FROM validators") == VALIDATORS
        # Two workers, two leader changes, a 1 h interval: the timer fetched once, by one worker only.
        triggers = [r["trigger"] for r in await db_pool.fetch("SELECT trigger FROM scoring_runs ORDER BY run_date")]
        assert triggers == ["timer", "cli", "cli"]
        async with db_pool.acquire() as conn:
            _counts, checks = await verify_database(conn)
        assert [c.name for c in checks if not c.ok] == []

        actors = await db_pool.fetch("SELECT action, actor_id FROM audit_log WHERE metadata->>'run_id' = $1 "
                                     "ORDER BY id", third)
        assert [(a["action"], a["actor_id"]) for a in actors][:2] == [("scoring_run.requested", "e2e-cli"),
                                                                      ("scoring_run.started", "e2e-cli")]
        for command, expected in ((["verify"], "database is consistent"), (["status"], "completed")):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stream_app.cli", *command, env=cli_env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
            assert proc.returncode == 0 and expected in out, out

        # Graceful stop: SIGTERM; a worker still alive after 30 s is SIGKILLed and shows up as -9 here.
        codes = [p.stop(timeout=30) for p in workers.values()]
        assert codes == [0, 0], "\n".join(p.tail() for p in workers.values())
        status = await stream_status(redis_client, prefix)
        assert status.lag == 0 and status.members == 0, status  # committed, and left the group
    finally:
        for proc in workers.values():
            if proc.popen.poll() is None:
                proc.signal(signal.SIGKILL)
        await sim.close()
