"""Item 1: a worker SIGKILLed before and after its PostgreSQL commit, under a stream of runs, then a history
check over every record produced and every row written.

Before the commit: a gate in this test's database (a trigger that sleeps in the middle of the sink's
transaction for one marked validator while `slow_gate` has a row) holds the write open; the worker is
SIGKILLed while PostgreSQL shows it sleeping, so that transaction never commits. After the commit: the
worker is SIGKILLed as soon as a run's first batch is visible in PostgreSQL, before it can commit its
stream offsets (1 s interval), so that batch is replayed. A restarted worker finishes each time.

History check: the set of (run, validator) of every record on validator-records equals the set of rows in
trust_scores (+ scoring_failures), no pair twice, and every run's counts equal its rows.
"""

from __future__ import annotations

import signal
from pathlib import Path

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from stream_app.app import RECORDS_TOPIC
from stream_app.fetcher import request_fetch
from stream_app.settings import Settings
from stream_app.sources.simulator.server import start_simulator
from stream_app.stream_status import stream_status
from stream_app.transport.keys import KeySpace
from stream_app.verify import verify_database
from tests.pipeline.processes import Proc
from tests.resilience.helpers import finished_run, start_worker, wait_for, worker_env

VALIDATORS = 1500

_GATE = """
CREATE TABLE slow_gate (vote text);
CREATE FUNCTION slow_gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM slow_gate g JOIN validators v ON v.vote_account = g.vote WHERE v.id = NEW.validator_id)
    THEN PERFORM pg_sleep(4);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER slow_gate BEFORE INSERT OR UPDATE ON trust_scores FOR EACH ROW EXECUTE FUNCTION slow_gate();
"""


async def produced_pairs(redis: aioredis.Redis, prefix: str) -> list[tuple[str, str]]:
    """(run, vote) of every record message on validator-records (headers skipped)."""
    keys = KeySpace(prefix)
    status = await stream_status(redis, prefix)
    out = []
    for p in status.partitions:
        if p.topic != RECORDS_TOPIC:
            continue
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
            keys.stream(RECORDS_TOPIC, p.partition))
        for _id, fields in entries:
            message = orjson.loads(fields[b"v"])
            record = message.get("record") if isinstance(message, dict) else None
            if isinstance(record, dict):
                out.append((str(record["run_id"]), str(record["vote_pubkey"])))
    return out


@pytest.mark.timeout(240)
async def test_sigkill_before_and_after_the_commit_loses_and_duplicates_nothing(
    settings: Settings, database_url: str, redis_url: str, redis_client: aioredis.Redis, db_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    await db_pool.execute(_GATE)
    sim = await start_simulator(0, seed=752, validators=VALIDATORS, epoch_seconds=0)
    prefix = settings.redis_prefix
    env = worker_env(settings, database_url, redis_url, sim.url, RUN_TIMEOUT="600")
    procs: list[Proc] = [start_worker("worker", env, tmp_path)]
    try:
        first = await wait_for(lambda: finished_run(db_pool, None), "the first run", 120, procs)
        assert first["status"] == "completed"
        marked = await db_pool.fetchval("SELECT vote_account FROM validators ORDER BY vote_account LIMIT 1")

        # Before the commit: the sink's transaction sleeps on the marked validator; SIGKILL it there.
        await db_pool.execute("INSERT INTO slow_gate VALUES ($1)", marked)
        second = await request_fetch(redis_client, prefix, trigger="cli", actor="kill-before")

        async def sleeping_in_the_sink() -> bool:
            return bool(await db_pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event = 'PgSleep'"))

        await wait_for(sleeping_in_the_sink, "the sink's transaction to reach the gate", 60, procs[-1:])
        committed_before = await db_pool.fetchval(
            "SELECT count(*) FROM trust_scores WHERE scoring_run_id = $1", second)
        procs[-1].kill()
        await db_pool.execute("DELETE FROM slow_gate")
        procs.append(start_worker("worker-after-kill-1", env, tmp_path))
        row = await wait_for(lambda: finished_run(db_pool, second), "run 2 after the kill", 120, procs[-1:])
        assert row["status"] == "completed", dict(row)

        # After the commit: SIGKILL as soon as run 3's first batch is committed (offsets not yet committed).
        third = await request_fetch(redis_client, prefix, trigger="cli", actor="kill-after")

        async def first_batch_committed() -> bool:
            return bool(await db_pool.fetchval("SELECT success_count FROM scoring_runs WHERE id = $1", third))

        await wait_for(first_batch_committed, "run 3's first committed batch", 60, procs[-1:])
        procs[-1].kill()
        procs.append(start_worker("worker-after-kill-2", env, tmp_path))
        row = await wait_for(lambda: finished_run(db_pool, third), "run 3 after the kill", 120, procs[-1:])
        assert row["status"] == "completed", dict(row)

        # History check over every record produced and every row written.
        produced = await produced_pairs(redis_client, prefix)
        written = [(str(r["run"]), r["vote"]) for r in await db_pool.fetch(
            "SELECT t.scoring_run_id AS run, v.vote_account AS vote FROM trust_scores t "
            "JOIN validators v ON v.id = t.validator_id "
            "UNION ALL SELECT scoring_run_id, vote_account FROM scoring_failures")]
        assert len(written) == len(set(written)), "a (run, validator) written twice"
        assert set(produced) == set(written), (len(set(produced) - set(written)), len(set(written) - set(produced)))
        assert len(set(produced)) == 3 * VALIDATORS
        for run in await db_pool.fetch("SELECT * FROM scoring_runs"):
            rows = sum(1 for r, _v in written if r == str(run["id"]))
            assert (run["status"], run["success_count"] + run["fail_count"], run["validator_count"]) == (
                "completed", rows, VALIDATORS), dict(run)
        async with db_pool.acquire() as conn:
            _counts, checks = await verify_database(conn)
        assert [c.name for c in checks if not c.ok] == []
        replayed = len(produced) - len(set(produced))
        print(f"kill before commit: {committed_before} rows of run 2 committed when killed; "
              f"records produced {len(produced)} (duplicates on the stream: {replayed}); rows {len(written)}")
        assert procs[-1].stop(30) == 0
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.signal(signal.SIGKILL)
        await sim.close()
