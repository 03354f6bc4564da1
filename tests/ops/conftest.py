"""Fixtures for the observability tests: the real web app, an RPC simulator, Prometheus text helpers."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from http_app.app import create_app
from stream_app.settings import Settings
from stream_app.sources.simulator.server import SimulatorHandle, start_simulator


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorHandle]:
    handle = await start_simulator(port=0, seed=752, validators=40, epoch_seconds=0)
    yield handle
    await handle.close()


@pytest.fixture
def ops_settings(settings: Settings, simulator: SimulatorHandle) -> Settings:
    return settings.with_overrides(solana_rpc_urls=(simulator.url,), rate_limit=1_000_000)


MakeClient = Callable[[web.Application], Awaitable[TestClient]]


@pytest.fixture
async def make_client(ops_settings: Settings) -> AsyncIterator[MakeClient]:
    """Test clients closed before this test's database is dropped (their pools would try to reconnect)."""
    made: list[TestClient] = []

    async def make(app: web.Application) -> TestClient:
        client = TestClient(TestServer(app))
        await client.start_server()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def web(make_client: MakeClient, ops_settings: Settings) -> TestClient:
    return await make_client(create_app(ops_settings, schema_name="ops"))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (sample name, sorted labels). Parsing is the first check."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


def promtool_check(text: str) -> str | None:
    """`promtool check metrics` on the text when promtool is installed; returns its complaints (None = absent)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return None
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                            timeout=30, check=False)
    return (result.stdout + result.stderr).decode().strip() if result.returncode != 0 else ""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def seed_business(pool: Any) -> None:
    """Six validators (five scored: 5, 15, 55, 95, 100; one delinquent) and four finished runs, the newest
    completed with 5 of 6 validators scored. Expected: completion 2/4, coverage 5/6."""
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO validators (vote_account, validator_pubkey, latest_score, delinquent) VALUES ($1, $2, $3, $4)",
            [(f"vote{i}", f"node{i}", score, i == 5) for i, score in enumerate([5.0, 15.0, 55.0, 95.0, 100.0, None])],
        )
        runs = [
            ("00000000-0000-0000-0000-000000000001", "failed", 6, 0, 0, 400),
            ("00000000-0000-0000-0000-000000000002", "partial", 6, 3, 0, 300),
            ("00000000-0000-0000-0000-000000000003", "completed", 6, 6, 0, 200),
            ("00000000-0000-0000-0000-000000000004", "completed", 6, 5, 1, 100),
        ]
        await conn.executemany(
            """INSERT INTO scoring_runs (id, status, validator_count, success_count, fail_count, run_date,
                                         completed_at, epoch, source, error)
               VALUES ($1::uuid, $2, $3, $4, $5, now() - make_interval(secs => $6),
                       now() - make_interval(secs => $6 - 60), 752, 'simulator',
                       CASE WHEN $2 = 'failed' THEN 'fetch failed: test' END)""",
            [(i, s, n, ok, bad, float(age)) for i, s, n, ok, bad, age in runs],
        )
