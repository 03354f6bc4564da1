"""Item 6: SIGTERM under load, to real `python -m http_app` and `python -m stream_app.worker` processes.

Web: 16 connections keep sending uncached GraphQL queries; SIGTERM arrives mid-load. Every request that was
already being served gets its complete answer (200, full JSON); later ones may be refused; the process
exits 0 within 30 s. Worker: SIGTERM while a run is being persisted: exit 0 within 30 s; a restarted worker
completes the run with every score exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from stream_app.fetcher import request_fetch
from stream_app.settings import Settings
from stream_app.sources.simulator.server import start_simulator
from tests.api.seed import seed
from tests.pipeline import processes
from tests.pipeline.processes import Proc, free_port
from tests.resilience.helpers import finished_run, start_worker, wait_for, worker_env

QUERY = """query($min: Float) { validators(filter: {minScore: $min}, orderBy: {field: SCORE}) {
  voteAccount name commission activatedStake latestScore latestTrustScore { score confidence } } }"""


async def _answered(outcomes: list[tuple[float, float, str]], n: int) -> bool:
    return sum(1 for o in outcomes if o[2] == "ok") >= n


async def _exit_within(proc: Proc, seconds: float) -> tuple[int | None, float]:
    started = time.monotonic()
    try:
        code: int | None = await asyncio.to_thread(proc.popen.wait, seconds)
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - started


@pytest.mark.timeout(120)
async def test_web_sigterm_under_load_finishes_in_flight_requests_and_exits(
    settings: Settings, database_url: str, redis_url: str, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await seed(db_pool, validators=300, runs=2, users=1)
    port = free_port()
    env = processes.base_env(DATABASE_URL=database_url, REDIS_URL=redis_url, REDIS_PREFIX=settings.redis_prefix,
                             PORT=str(port), HOST="127.0.0.1", RATE_LIMIT="1000000", JWT_SECRET="w" * 40,
                             LOG_LEVEL="warning")
    web = Proc("web", [sys.executable, "-m", "http_app"], env, tmp_path)
    url = f"http://127.0.0.1:{port}/graphql"
    outcomes: list[tuple[float, float, str]] = []  # (sent, answered, "ok" | failure)
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as session:
            async def up() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(up, "the web process to listen", 30, [web])

            async def client(n: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    sent = time.monotonic()
                    body = {"query": QUERY, "variables": {"min": (n * 1000 + i) / 1e6}}  # distinct: uncached
                    try:
                        async with session.post(url, json=body) as resp:
                            data = await resp.read()
                            ok = resp.status == 200 and "validators" in orjson.loads(data)["data"]
                            outcomes.append((sent, time.monotonic(), "ok" if ok else f"status {resp.status}"))
                    except (aiohttp.ClientError, ValueError) as exc:
                        outcomes.append((sent, time.monotonic(), type(exc).__name__))
                        await asyncio.sleep(0.05)

            clients = [asyncio.create_task(client(n)) for n in range(16)]
            await wait_for(lambda: _answered(outcomes, 32), "32 answers under load", 60, [web])
            served_before = sum(1 for o in outcomes if o[2] == "ok")
            term_at = time.monotonic()
            web.signal(signal.SIGTERM)
            code, took = await _exit_within(web, 30)
            stop.set()
            await asyncio.gather(*clients)
        assert served_before > 16, outcomes[:5]
        assert code == 0 and took < 30, (code, took, web.tail())
        # Requests sent before SIGTERM were in flight: each must have been answered in full.
        cut = [o for o in outcomes if o[0] < term_at and o[2] != "ok"]
        assert cut == [], (len(cut), cut[:5])
        print(f"web: {served_before} answered before SIGTERM; exited {code} after {took:.2f} s; "
              f"{sum(1 for o in outcomes if o[0] < term_at)} sent before SIGTERM all answered")
    finally:
        if web.popen.poll() is None:
            web.kill()


@pytest.mark.timeout(150)
async def test_worker_sigterm_mid_run_exits_cleanly_and_the_run_completes(
    settings: Settings, database_url: str, redis_url: str, redis_client: aioredis.Redis, db_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    validators = 1500
    sim = await start_simulator(0, seed=752, validators=validators, epoch_seconds=0)
    env = worker_env(settings, database_url, redis_url, sim.url)
    worker = start_worker("worker", env, tmp_path)
    try:
        await wait_for(lambda: finished_run(db_pool, None), "the first run", 120, [worker])
        run_id = await request_fetch(redis_client, settings.redis_prefix, trigger="cli", actor="sigterm")

        async def persisting() -> bool:
            return bool(await db_pool.fetchval("SELECT success_count FROM scoring_runs WHERE id = $1", run_id))

        await wait_for(persisting, "the run to start persisting", 60, [worker])
        worker.signal(signal.SIGTERM)
        code, took = await _exit_within(worker, 30)
        assert code == 0 and took < 30, (code, took, worker.tail())
        print(f"worker exited {code} {took:.2f} s after SIGTERM mid-run")
        worker = start_worker("worker-2", env, tmp_path)
        row = await wait_for(lambda: finished_run(db_pool, run_id), "the run after the restart", 90, [worker])
        assert (row["status"], row["success_count"], row["fail_count"]) == ("completed", validators, 0), dict(row)
        stored = await db_pool.fetchrow("SELECT count(*) AS n, count(DISTINCT validator_id) AS d FROM trust_scores "
                                        "WHERE scoring_run_id = $1", run_id)
        assert (stored["n"], stored["d"]) == (validators, validators)

        # The first worker may have written the whole run while stopping: then the run is complete before
        # worker-2 has even started. Stop worker-2 once it runs (holds partitions), not during its start-up.
        async def running() -> bool:
            return "partition(s)" in worker.log_path.read_text(errors="replace")

        await wait_for(running, "worker-2 to take its partitions", 60, [worker])
        assert worker.stop(30) == 0
    finally:
        if worker.popen.poll() is None:
            worker.kill()
        await sim.close()


# The worker process, with SIGTERM sent to itself at the moment it first imports Faust (the slow part of its
# start-up: 50 ms to seconds): the signal must find the worker's handler and end it with status 0.
_TERM_WHILE_IMPORTING_FAUST = """
import importlib.abc, os, runpy, signal, sys

class TermOnFaust(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "faust":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, TermOnFaust())
runpy.run_module("stream_app.worker", run_name="__main__", alter_sys=True)
"""


def test_worker_sigterm_while_importing_faust_exits_0() -> None:
    done = subprocess.run([sys.executable, "-c", _TERM_WHILE_IMPORTING_FAUST], capture_output=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, (done.returncode, done.stderr.decode(errors="replace")[-2000:])
