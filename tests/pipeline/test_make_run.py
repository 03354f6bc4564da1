"""`make run` (= `solstake run`) on a clean data directory: embedded PostgreSQL and Redis, the simulator
fallback when the configured RPC is unreachable, a completed mainnet-size run, and a clean Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from stream_app.rpc_fallback import read_fallback
from tests.pipeline import processes


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _wait_for_line(proc: processes.Proc, pattern: str, seconds: float) -> re.Match[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        match = re.search(pattern, proc.log_path.read_text(errors="replace"), flags=re.M)
        if match:
            return match
        if proc.popen.poll() is not None:
            break
        await asyncio.sleep(0.2)
    raise AssertionError(f"no line matching {pattern!r}\n{proc.tail(80)}")


@pytest.mark.slow
@pytest.mark.timeout(200)
async def test_solstake_run_reaches_a_completed_run_and_stops_everything(tmp_path: Path) -> None:
    dead_rpc, web_port = processes.free_port(), processes.free_port()
    env = processes.base_env(
        SOLSTAKE_DATA_DIR=str(tmp_path / "data"), SOLANA_RPC_URL=f"http://127.0.0.1:{dead_rpc}",
        SIMULATOR_FALLBACK="true", SIMULATOR_PORT=str(processes.free_port()), PORT=str(web_port),
        WORKER_METRICS_PORT=str(processes.free_port()), REDIS_PREFIX="solstake",
    )
    run = processes.Proc("solstake-run", [sys.executable, "-m", "stream_app.cli", "run"], env, tmp_path)
    try:
        pg = (await _wait_for_line(run, r"PostgreSQL (\S+)", 120))[1]
        redis_url = (await _wait_for_line(run, r"Redis +(redis://\S+)", 10))[1]
        await _wait_for_line(run, r"SIMULATED CLUSTER", 10)
        deadline = time.monotonic() + 120
        conn = await asyncpg.connect(pg)
        try:
            row = None
            while time.monotonic() < deadline and row is None:
                row = await conn.fetchrow("SELECT * FROM scoring_runs WHERE status = 'completed' LIMIT 1")
                await asyncio.sleep(0.5)
            assert row is not None, run.tail(80)
            assert row["validator_count"] == row["success_count"] == 1351 and row["source"] == "simulator"
            assert await conn.fetchval("SELECT count(*) FROM trust_scores WHERE scoring_run_id = $1",
                                       row["id"]) == 1351
        finally:
            await conn.close()
        redis = aioredis.from_url(redis_url)
        try:
            fallback = await read_fallback(redis, "solstake")
        finally:
            await redis.aclose()
        assert fallback is not None and fallback["configured"] == [f"http://127.0.0.1:{dead_rpc}"]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{web_port}/health") as resp:
            health = await resp.json()
        assert health["simulatorFallback"]["active"] is True, health  # said loudly, where operators look
        redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])

        run.signal(signal.SIGINT)  # Ctrl-C
        assert run.popen.wait(90) == 0, run.tail(80)
        log = run.log_path.read_text()
        order = [log.index(f"stopped {name}") for name in ("web.1", "worker.1", "simulator")]
        assert order == sorted(order)  # children first, in order, then the embedded servers
        assert log.rstrip().endswith("stopped")
        assert not _port_open(web_port) and not _port_open(redis_port)
        assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists()
    finally:
        if run.popen.poll() is None:  # a failed assertion above: still stop the children and servers cleanly
            run.signal(signal.SIGINT)
            try:
                run.popen.wait(90)
            except subprocess.TimeoutExpired:
                run.kill()
