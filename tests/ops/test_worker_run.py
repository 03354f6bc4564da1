"""A real worker process (`python -m stream_app.worker`) scores runs from the RPC simulator; its /metrics
parses (and passes promtool) and its counters move by exactly one run's worth per run. The operator
commands that need a live pipeline (`score all`, `fetch now`, `stream monitor`, `metrics health`) run
against it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from stream_app.cli import main as solstake
from stream_app.settings import Settings
from stream_app.sources.simulator.server import SimulatorHandle
from tests.ops.conftest import free_port, promtool_check, samples, value

pytestmark = pytest.mark.timeout(240)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    metrics_url: str
    env: dict[str, str]
    log_path: Any


def worker_env(settings: Settings, simulator: SimulatorHandle, metrics_port: int) -> dict[str, str]:
    assert settings.database_url and settings.redis_url
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "SOLANA_"))}
    env.update({
        "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix, "SOLANA_RPC_URL": simulator.url, "SIMULATOR_FALLBACK": "false",
        "WORKER_METRICS_PORT": str(metrics_port), "FETCH_INTERVAL": "3600", "STREAM_PARTITIONS": "2",
        "JWT_SECRET": "w" * 40, "LOG_FORMAT": "json", "RPC_MAX_RETRIES": "1",
    })
    return env


@pytest.fixture
def worker(settings: Settings, simulator: SimulatorHandle, tmp_path: Any) -> Iterator[Worker]:
    port = free_port()
    env = worker_env(settings, simulator, port)
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "stream_app.worker"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    yield Worker(proc, f"http://127.0.0.1:{port}/metrics", env, tmp_path / "worker.log")
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    log.close()
    tail = (tmp_path / "worker.log").read_bytes()[-3000:].decode(errors="replace")
    print("--- worker log tail ---\n" + tail)


async def scrape(url: str, seconds: float = 60.0) -> str:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return await resp.text()
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"worker metrics at {url} never answered")
            await asyncio.sleep(0.3)


async def scrape_until(url: str, name: str, at_least: float, seconds: float = 30.0,
                       **labels: str) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    deadline = time.monotonic() + seconds
    while True:
        text = await scrape(url)
        parsed = samples(text)
        if value(parsed, name, **labels) >= at_least or time.monotonic() > deadline:
            return text, parsed
        await asyncio.sleep(0.2)


async def finished_runs(pool: asyncpg.Pool, count: int, seconds: float = 120.0) -> list[asyncpg.Record]:
    deadline = time.monotonic() + seconds
    while True:
        rows = await pool.fetch("SELECT * FROM scoring_runs WHERE status <> 'running' ORDER BY run_date")
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) >= count, f"only {len(rows)} finished runs after {seconds:g} s"
            return rows
        await asyncio.sleep(0.3)


async def run_cli(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> int:
    for key, val in env.items():
        monkeypatch.setenv(key, val)
    return await asyncio.to_thread(solstake, list(argv))


async def test_a_run_moves_the_worker_counters_by_one_run(
    worker: Worker, db_pool: asyncpg.Pool, simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = len(simulator.cluster.validators)
    # The first timer tick starts a run at once (no run yet); wait for it to be fully written.
    first = (await finished_runs(db_pool, 1))[0]
    assert first["status"] == "completed", dict(first)
    assert first["validator_count"] == expected
    # The fetch cycle runs in a short-lived child whose counters the worker adds when the child reports;
    # scoring can finish first, so wait for the cycle to be counted.
    text, before = await scrape_until(worker.metrics_url, "solstake_fetch_cycles_total", 1, outcome="running")
    assert value(before, "solstake_fetch_cycles_total", outcome="running") == 1
    assert value(before, "solstake_fetch_records_produced_total") == expected
    assert value(before, "solstake_scoring_runs_finished_total", status="completed") == 1
    assert value(before, "solstake_fetch_duration_seconds_count") == 1
    assert value(before, "solstake_stream_records_processed_total", outcome="ok") + value(
        before, "solstake_stream_records_processed_total", outcome="failed") >= expected
    assert value(before, "solstake_scores_persisted_total") >= first["success_count"]
    assert value(before, "solstake_db_write_seconds_count", operation="persist_scores") >= 1
    assert value(before, "solstake_stream_events_total", topic="validator-records") >= expected
    assert value(before, "solstake_stream_rebalances_total") >= 1
    assert value(before, "solstake_stream_rebalance_duration_seconds_count") >= 1
    assert value(before, "solstake_table_recovery_seconds_count") >= 1  # validator-state rebuilt on assignment
    assert "solstake_build_info" in {name for name, _ in before}
    complaints = promtool_check(text)
    assert complaints in (None, ""), complaints

    # `score all` asks the leader for a run and shows its progress until it completes.
    capsys.readouterr()
    assert await run_cli(monkeypatch, worker.env, "score", "all", "--timeout", "120") == 0
    out = capsys.readouterr().out
    assert "requested" in out and "completed" in out and f"{expected}/{expected}" in out, out
    runs = await finished_runs(db_pool, 2)
    assert runs[-1]["trigger"] == "cli" and runs[-1]["status"] == "completed"

    _text, after = await scrape_until(worker.metrics_url, "solstake_fetch_cycles_total", 2, outcome="running")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("solstake_fetch_cycles_total", outcome="running") == 1
    assert delta("solstake_fetch_cycles_total", outcome="failed") == 0
    assert delta("solstake_fetch_records_produced_total") == expected
    assert delta("solstake_scoring_runs_finished_total", status="completed") == 1
    assert delta("solstake_fetch_duration_seconds_count") == 1
    assert delta("solstake_stream_records_processed_total", outcome="ok") + delta(
        "solstake_stream_records_processed_total", outcome="failed") == expected
    assert delta("solstake_scores_persisted_total") == runs[-1]["success_count"]

    # `fetch now` queues a run without waiting; the worker scores it too.
    assert await run_cli(monkeypatch, worker.env, "fetch", "now") == 0
    assert "fetch requested" in capsys.readouterr().out
    runs = await finished_runs(db_pool, 3)
    assert runs[-1]["status"] == "completed"

    # `stream monitor` sees the topics, a live member and no lag once everything is committed.
    deadline = time.monotonic() + 30
    while True:
        assert await run_cli(monkeypatch, worker.env, "stream", "monitor", "--json") == 0
        data = orjson.loads(capsys.readouterr().out)
        group = next((g for g in data["groups"] if g["group"] == "solstake"), None)
        lag = None if group is None else sum(p["lag"] or 0 for p in group["partitions"])
        if lag == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert group is not None and lag == 0, data
    topics = {p["topic"] for p in data["partitions"]}
    assert {"validator-records", "trust-scores"} <= topics
    produced = sum(p["highwater"] for p in data["partitions"] if p["topic"] == "validator-records")
    assert produced >= 3 * expected  # three runs, one record per validator each (plus run headers)
    assert sum(1 for m in group["members"] if m["expires_in"] > 0) == 1
    assert any(p["last_commit_record_ms"] for p in group["partitions"])

    assert await run_cli(monkeypatch, worker.env, "stream", "monitor") == 0
    text_out = capsys.readouterr().out
    assert "validator-records" in text_out and "live member" in text_out and "lag" in text_out

    # The worker's own stream gauges (refreshed from Redis every 5 s) agree: one member, no lag.
    deadline = time.monotonic() + 25
    while True:  # the gauges are a snapshot refreshed every 5 s: wait for one taken after the commits
        final = samples(await scrape(worker.metrics_url))
        members = value(final, "solstake_stream_group_members", group="solstake")
        lags = {labels: v for (name, labels), v in final.items() if name == "solstake_stream_lag_records"}
        if (members == 1 and lags and not any(lags.values())) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    assert members == 1
    assert lags and all(v == 0 for v in lags.values()), lags
    assert value(final, "solstake_stream_highwater_offset", topic="validator-records", partition="0") > 0
    assert value(final, "solstake_redis_memory_used_bytes") > 0

    # Production-format logs: JSON lines carrying the seed's context keys.
    lines = [orjson.loads(line) for line in worker.log_path.read_bytes().splitlines() if line.startswith(b"{")]
    progress = [e for e in lines if e.get("phase") == "persist" and e.get("run_id") == str(runs[-1]["id"])]
    assert progress, "no progress line for the last run"
    assert {"batch", "total_batches", "progress", "success_rate"} <= set(progress[-1])
    assert progress[-1]["progress"] == f"{expected}/{expected}" and progress[-1]["success_rate"] == "100.0%"
    assert any(e.get("phase") == "fetch" and e.get("run_id") == str(runs[-1]["id"]) for e in lines)

    # `metrics health` is all green with a live worker.
    assert await run_cli(monkeypatch, worker.env, "metrics", "health") == 0
    health = capsys.readouterr().out
    assert "sol-stake health: OK" in health, health


async def test_score_all_without_a_worker_withdraws_its_request(
    settings: Settings, simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch, redis_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = worker_env(settings, simulator, free_port())
    assert await run_cli(monkeypatch, env, "score", "all", "--timeout", "1") == 1
    err = capsys.readouterr().err
    assert "no worker picked the request up; it was withdrawn" in err
    assert await redis_client.llen(f"{settings.redis_prefix}:fetch:requests") == 0

