"""Item 2: Redis (a private embedded server with AOF, appendfsync everysec) crashes (SIGKILL) in the middle
of a run and is started again on the same port after a few seconds, under a real worker process and the web
app. Asserted: the worker and web stay up and recover on their own (readiness 503 while Redis is gone, 200
after; a GraphQL query answers), the run completes with every score exactly once, and how many acknowledged
stream entries the crash lost is measured (the AOF policy allows about the last second of writes; the
Redis log shows what it loaded) and printed; a lost suffix is only replayed, never a lost score.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from http_app.app import create_app
from stream_app.embedded import EmbeddedRedis
from stream_app.fetcher import request_fetch
from stream_app.settings import Settings
from stream_app.sources.simulator.server import start_simulator
from stream_app.stream_status import stream_status
from tests.pipeline.processes import free_port
from tests.resilience.helpers import finished_run, start_worker, wait_for, worker_env

VALIDATORS = 1500
DOWN_SECONDS = 3.0


async def _status(session: aiohttp.ClientSession, method: str, url: str, **kw: object) -> int:
    try:
        async with session.request(method, url, timeout=aiohttp.ClientTimeout(total=5), **kw) as resp:  # type: ignore[arg-type]
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


@pytest.mark.timeout(220)
async def test_redis_crash_mid_run_workers_and_web_recover_and_every_score_lands(
    settings: Settings, database_url: str, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    server = EmbeddedRedis(root=tmp_path / "redis", port=free_port(), appendonly=True)
    redis_url = server.start()
    redis = aioredis.from_url(redis_url)
    settings = settings.with_overrides(redis_url=redis_url)
    prefix = settings.redis_prefix
    sim = await start_simulator(0, seed=752, validators=VALIDATORS, epoch_seconds=0)
    worker = start_worker("worker", worker_env(settings, database_url, redis_url, sim.url), tmp_path)
    web = TestServer(create_app(settings.with_overrides(rate_limit=1_000_000)), host="127.0.0.1")
    await web.start_server()
    session = aiohttp.ClientSession()
    readyz, graphql = str(web.make_url("/readyz")), str(web.make_url("/graphql"))
    query = {"json": {"query": "{ scoringRuns(first: 5) { id status } }"}}
    try:
        await wait_for(lambda: finished_run(db_pool, None), "the first run", 120, [worker])
        run_id = await request_fetch(redis, prefix, trigger="cli", actor="redis-crash")

        async def persisting() -> bool:
            return bool(await db_pool.fetchval("SELECT success_count FROM scoring_runs WHERE id = $1", run_id))

        await wait_for(persisting, "run 2 to start persisting", 60, [worker])
        before = {(p.topic, p.partition): p for p in (await stream_status(redis, prefix)).partitions}
        assert server._proc is not None
        server._proc.kill()  # a crash: no final AOF flush
        server._proc.wait(10)
        killed_at = time.monotonic()
        readiness = set()
        while time.monotonic() - killed_at < DOWN_SECONDS:
            readiness.add(await _status(session, "GET", readyz))
            await asyncio.sleep(0.3)
        assert readiness == {503}, readiness
        assert worker.popen.poll() is None, worker.tail()
        assert server.start() == redis_url
        await redis.aclose()
        redis = aioredis.from_url(redis_url)  # this test's own client: a fresh connection after the crash
        after = {(p.topic, p.partition): p for p in (await stream_status(redis, prefix)).partitions}
        lost = {f"{t}:{p}": before[(t, p)].highwater - after[(t, p)].highwater
                for (t, p) in before if (t, p) in after and before[(t, p)].highwater > after[(t, p)].highwater}
        missing = [f"{t}:{p}" for (t, p) in before if (t, p) not in after]
        print(f"acknowledged stream entries lost in the crash (everysec AOF): {sum(lost.values())} {lost}; "
              f"partitions missing: {missing}")
        assert not missing

        row = await wait_for(lambda: finished_run(db_pool, run_id), "run 2 to finish after the crash", 120, [worker])
        assert (row["status"], row["success_count"], row["fail_count"]) == ("completed", VALIDATORS, 0), dict(row)
        stored = await db_pool.fetchrow("SELECT count(*) AS n, count(DISTINCT validator_id) AS d FROM trust_scores "
                                        "WHERE scoring_run_id = $1", run_id)
        assert (stored["n"], stored["d"]) == (VALIDATORS, VALIDATORS)

        async def web_back() -> bool:
            return (await _status(session, "GET", readyz) == 200
                    and await _status(session, "POST", graphql, **query) == 200)

        await wait_for(web_back, "the web app to be ready and answering again", 30, [worker])
        # And the pipeline still takes new work after the crash.
        third = await request_fetch(redis, prefix, trigger="cli", actor="redis-crash")
        row = await wait_for(lambda: finished_run(db_pool, third), "a run after the crash", 90, [worker])
        assert (row["status"], row["success_count"]) == ("completed", VALIDATORS)
        assert worker.stop(30) == 0, worker.tail()
    finally:
        if worker.popen.poll() is None:
            worker.kill()
        await session.close()
        await web.close()
        await redis.aclose()
        await sim.close()
        server.stop()
