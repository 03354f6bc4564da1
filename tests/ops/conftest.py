"""Fixtures for the observability tests: the real web app, an RPC simulator, Prometheus text helpers."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
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


@pytest.fixture
async def web(aiohttp_client: Any, ops_settings: Settings) -> AsyncIterator[TestClient]:
    client: TestClient = await aiohttp_client(create_app(ops_settings, schema_name="ops"))
    yield client


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
