"""The simulator as other processes see it: the HTTP control API and the module entry point."""

from __future__ import annotations

import asyncio
import socket
import sys

import aiohttp
import pytest

from stream_app.sources.simulator.cluster import SLOTS_PER_EPOCH
from stream_app.sources.simulator.server import SimulatorHandle
from tests.sources.conftest import fast_client


async def test_control_api_drives_clock_and_faults(small_sim: SimulatorHandle) -> None:
    base = small_sim.url.rstrip("/")
    async with aiohttp.ClientSession() as http:
        state = await (await http.get(f"{base}/_sim/state")).json()
        assert state["epoch"] == small_sim.cluster.epoch and len(state["wallets"]) == 3
        info = await (await http.post(f"{base}/_sim/advance", json={"epochs": 1, "slots": 7})).json()
        assert info["absoluteSlot"] == state["slot"] + SLOTS_PER_EPOCH + 7 and info["epoch"] == state["epoch"] + 1
        bad = await http.post(f"{base}/_sim/faults", json={"kind": "earthquake"})
        assert bad.status == 400 and "unknown fault kind" in await bad.text()
        ok = await http.post(f"{base}/_sim/faults", json=[{"kind": "server_error", "times": 1, "status": 500}])
        assert ok.status == 200
        created = await (await http.post(f"{base}/_sim/stake-accounts", json={
            "staker": state["wallets"][0], "lamports": 5})).json()
        assert created["pubkey"]
    async with fast_client(small_sim.url) as rpc:
        assert await rpc.call("getSlot") == info["absoluteSlot"]
    assert rpc.stats.retries["RpcUnavailable"] == 1
    async with aiohttp.ClientSession() as http:
        assert (await http.delete(f"{base}/_sim/faults")).status == 200
        clock = await (await http.post(f"{base}/_sim/clock", json={"epoch_seconds": 60})).json()
        assert clock["epoch_seconds"] == 60


async def test_json_rpc_protocol_errors(small_sim: SimulatorHandle) -> None:
    async with aiohttp.ClientSession() as http:
        garbage = await (await http.post(small_sim.url, data=b"{nope")).json()
        assert garbage["error"]["code"] == -32700
        batch = await (await http.post(small_sim.url, json=[
            {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}, {"jsonrpc": "2.0", "id": 2, "method": "getHealth"},
            {"id": 3}])).json()
        assert [a.get("result") for a in batch[:2]] == [small_sim.cluster.slot, "ok"]
        assert batch[2]["error"]["code"] == -32600
        bad_key = await (await http.post(small_sim.url, json={
            "jsonrpc": "2.0", "id": 4, "method": "getInflationReward", "params": [["xyz"]]})).json()
        assert bad_key["error"]["code"] == -32602


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(60)
async def test_module_entry_point_serves_json_rpc() -> None:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream_app.sources.simulator", "--port", str(port), "--validators", "300",
        "--epoch-seconds", "60", stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        banner = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert f":{port}/" in banner.decode() and "300 vote accounts" in banner.decode()
        async with fast_client(f"http://127.0.0.1:{port}/") as rpc:
            first = await rpc.call("getSlot")
            await asyncio.sleep(0.05)
            later = await rpc.call("getSlot")  # 7,200 slots per second at 60 s per epoch
            votes = await rpc.call("getVoteAccounts")
        assert later > first
        assert len(votes["current"]) + len(votes["delinquent"]) == 300
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
