"""Item 4: a poison score, one PostgreSQL always refuses (a real trigger in this test's database raises for
one validator's trust_scores row), through a real worker process.

Expected: after POISON_TRIES failed writes the batch is split until the poison is alone; the poison goes to
the `dead-letters` stream (with a metric and a log line) and is recorded as a failure of its run; every other
score of the batch is committed and the partition keeps flowing (the next run completes too).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from stream_app.app import DEAD_LETTER_TOPIC
from stream_app.fetcher import request_fetch
from stream_app.messages import decode_score
from stream_app.poison import POISON_TRIES
from stream_app.settings import Settings
from stream_app.sources.rpc import RpcClient
from stream_app.sources.simulator.server import start_simulator
from stream_app.sources.snapshot import fetch_cluster_snapshot
from stream_app.transport.keys import KeySpace
from tests.ops.conftest import samples, value
from tests.pipeline.processes import Proc, free_port
from tests.resilience.helpers import finished_run, run_failures, run_scores, wait_for, worker_env

VALIDATORS = 40

_POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT vote_account FROM validators WHERE id = NEW.validator_id) = '{vote}' THEN
        RAISE EXCEPTION 'poison score for %', '{vote}' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON trust_scores FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


async def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return samples(await resp.text())


@pytest.mark.timeout(150)
async def test_a_poison_score_is_dead_lettered_after_n_tries_and_the_partition_keeps_flowing(
    settings: Settings, database_url: str, redis_url: str, redis_client: aioredis.Redis, db_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    sim = await start_simulator(0, seed=752, validators=VALIDATORS, epoch_seconds=0)
    async with RpcClient([sim.url]) as rpc:
        votes = sorted(r.vote_pubkey for r in (await fetch_cluster_snapshot(rpc)).records)
    poison = votes[len(votes) // 2]
    await db_pool.execute(_POISON.format(vote=poison))
    port = free_port()
    env = worker_env(settings, database_url, redis_url, sim.url, WORKER_METRICS_PORT=str(port))
    worker = Proc("worker", [sys.executable, "-m", "stream_app.worker"], env, tmp_path)
    dead_stream = KeySpace(settings.redis_prefix).stream(DEAD_LETTER_TOPIC, 0)
    try:
        started = time.monotonic()
        first = await wait_for(lambda: finished_run(db_pool, None), "the first run despite the poison", 90, [worker])
        took = time.monotonic() - started
        assert (first["status"], first["success_count"], first["fail_count"]) == (
            "completed", VALIDATORS - 1, 1), dict(first)
        scores = await run_scores(db_pool, first["id"])
        assert len(scores) == VALIDATORS - 1 and poison not in scores
        failures = await run_failures(db_pool, first["id"])
        assert list(failures) == [poison] and "poison score" in failures[poison], failures

        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis_client.xrange(dead_stream)  # type: ignore[assignment]
        assert len(entries) == 1, entries
        fields = entries[0][1]
        dead = decode_score(fields[b"v"])
        assert (dead.vote_pubkey, dead.run_id, dead.failed) == (poison, str(first["id"]), False)
        assert fields[b"k"] == poison.encode()

        # The partition keeps flowing: the next run completes the same way, a second dead letter.
        second = await request_fetch(redis_client, settings.redis_prefix, trigger="cli", actor="poison")
        row = await wait_for(lambda: finished_run(db_pool, second), "the second run", 60, [worker])
        assert (row["status"], row["success_count"], row["fail_count"]) == ("completed", VALIDATORS - 1, 1)
        assert await redis_client.xlen(dead_stream) == 2

        parsed = await _metrics(f"http://127.0.0.1:{port}/metrics")
        assert value(parsed, "solstake_dead_letters_total", topic="trust-scores") == 2
        assert value(parsed, "solstake_persist_retries_total") >= 2 * POISON_TRIES
        log = worker.log_path.read_text()
        assert log.count(f"dead-lettered score of validator {poison}") == 2, worker.tail()
        print(f"first run with a poison score completed {took:.1f} s after the worker started")
    finally:
        worker.signal(signal.SIGTERM)
        await asyncio.to_thread(worker.stop, 30)
        await sim.close()


def test_only_data_refusals_count_towards_dead_lettering_never_outages() -> None:
    from stream_app.poison import is_refusal

    refused = [asyncpg.CheckViolationError("x"), asyncpg.UniqueViolationError("x"),
               asyncpg.NumericValueOutOfRangeError("x"), asyncpg.RaiseError("x")]
    waited_out = [asyncpg.ObjectNotInPrerequisiteStateError("db not accepting connections"),
                  asyncpg.CannotConnectNowError("x"), asyncpg.AdminShutdownError("x"),
                  asyncpg.DeadlockDetectedError("x"), asyncpg.QueryCanceledError("x"),
                  asyncpg.TooManyConnectionsError("x"), asyncpg.ConnectionDoesNotExistError("x"),
                  asyncpg.UndefinedColumnError("x"), OSError("x"), TimeoutError()]
    assert [is_refusal(e) for e in refused] == [True] * len(refused)
    assert [is_refusal(e) for e in waited_out] == [False] * len(waited_out)
