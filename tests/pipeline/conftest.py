"""Pipeline fixtures: an in-process RPC simulator (a real HTTP JSON-RPC server) and Redis clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stream_app.sources.simulator.server import SimulatorHandle, start_simulator


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorHandle]:
    """A small simulated cluster (60 vote accounts), clock frozen so runs are reproducible."""
    handle = await start_simulator(0, seed=752, validators=60, epoch_seconds=0)
    yield handle
    await handle.close()
