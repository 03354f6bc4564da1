"""Fixtures for the Solana source: real mainnet files and an in-process RPC simulator (a real HTTP server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from stream_app.sources.rpc import RpcClient
from stream_app.sources.simulator.server import SimulatorHandle, start_simulator
from tests.conftest import SHARED_DATA

E752_VOTES = "laine_getVoteAccounts_mainnet_e752_2025-03-07.json"
E45_VOTES = "validatorsapp_getVoteAccounts_mainnet_e45_2020-06-28.json"
NODES_2020 = "validatorsapp_getClusterNodes_mainnet_2020-06-28.json"
EPOCH_INFO_2020 = "validatorsapp_getEpochInfo_mainnet_e45_2020-06-28.json"
CONFIG_2021 = "validatorsapp_getProgramAccounts_Config_jsonParsed_mainnet_2021-11-02.json"
JITO_2025 = "vault_jitoKobeValidators_mainnet_2025-09-06.json"  # Jito API, not RPC


def rpc_result(name: str) -> Any:
    return orjson.loads((SHARED_DATA / name).read_bytes())["result"]


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    """The real-size simulated cluster (1,351 vote accounts of epoch 752), frozen clock."""
    handle = await start_simulator(port=0, seed=752, epoch_seconds=0)
    yield handle
    await handle.close()


@pytest.fixture
async def small_sim() -> AsyncIterator[SimulatorHandle]:
    """A 120-validator cluster for fault tests, frozen clock."""
    handle = await start_simulator(port=0, seed=7, validators=120, epoch_seconds=0)
    yield handle
    await handle.close()


def fast_client(*urls: str, **overrides: Any) -> RpcClient:
    """A client with short timeouts and backoff so fault tests stay fast (same code path as production)."""
    options: dict[str, Any] = {"timeout": 2.0, "max_retries": 3, "backoff_base": 0.01, "backoff_cap": 0.05}
    options.update(overrides)
    return RpcClient(list(urls), **options)
