"""RpcClient against the simulator with every fault: the right retries, the right errors, nothing wrong recorded.

Waits are checked through `RpcStats.waits` (what the client decided to sleep), never against wall-clock speed.
"""

from __future__ import annotations

import pytest

from stream_app.records import RecordError
from stream_app.sources.rpc import (
    RpcMalformed,
    RpcResponseError,
    RpcStale,
    RpcTooLarge,
    RpcUnavailable,
)
from stream_app.sources.simulator.server import SimulatorHandle, start_simulator
from stream_app.sources.snapshot import SourceState, fetch_cluster_snapshot
from tests.sources.conftest import fast_client


async def test_rate_limit_honours_retry_after(small_sim: SimulatorHandle) -> None:
    small_sim.faults.add("rate_limit", methods=["getEpochInfo"], times=2, retry_after=0.3)
    async with fast_client(small_sim.url) as rpc:
        info = await rpc.call("getEpochInfo")
    assert info["epoch"] == small_sim.cluster.epoch
    assert small_sim.requests["getEpochInfo"] == 1  # 429s are answered before the method runs
    assert [k for _, m, k in small_sim.log if m == "getEpochInfo"] == ["rate_limit", "rate_limit", None]
    assert rpc.stats.retries["RpcUnavailable"] == 2
    assert len(rpc.stats.waits) == 2 and all(w >= 0.25 for w in rpc.stats.waits)  # 0.3 s minus elapsed time


async def test_retry_after_on_one_url_fails_over_to_the_other(small_sim: SimulatorHandle) -> None:
    second = await start_simulator(share_with=small_sim)
    try:
        small_sim.faults.add("rate_limit", retry_after=30)
        async with fast_client(small_sim.url, second.url) as rpc:
            for _ in range(3):
                await rpc.call("getSlot")
        assert rpc.stats.waits == []  # never waited out the 30 s: the other node was free
        assert second.requests["getSlot"] == 3
        assert rpc.url == second.url
    finally:
        await second.close()


async def test_server_errors_then_success(small_sim: SimulatorHandle) -> None:
    small_sim.faults.add("server_error", status=502, times=2)
    async with fast_client(small_sim.url) as rpc:
        assert await rpc.call("getSlot") == small_sim.cluster.slot
    assert rpc.stats.retries["RpcUnavailable"] == 2 and rpc.stats.requests == 3


async def test_server_errors_forever_give_a_clear_error_after_the_retry_budget(small_sim: SimulatorHandle) -> None:
    small_sim.faults.add("server_error", status=503)
    async with fast_client(small_sim.url, max_retries=3) as rpc:
        with pytest.raises(RpcUnavailable, match=r"HTTP 503.*gave up after 4 attempts") as info:
            await rpc.call("getEpochInfo")
    assert info.value.method == "getEpochInfo" and info.value.attempts == 4
    assert len(small_sim.log) == 4


async def test_slow_answer_within_timeout_is_accepted(small_sim: SimulatorHandle) -> None:
    small_sim.faults.add("slow", delay=0.2, times=1)
    async with fast_client(small_sim.url, timeout=2.0) as rpc:
        assert (await rpc.call("getEpochInfo"))["absoluteSlot"] == small_sim.cluster.slot
    assert rpc.stats.retries == {}


async def test_timeout_is_retried(small_sim: SimulatorHandle) -> None:
    small_sim.faults.add("timeout", delay=5, times=1)
    async with fast_client(small_sim.url, timeout=0.3) as rpc:
        assert (await rpc.call("getEpochInfo"))["epoch"] == small_sim.cluster.epoch
    assert rpc.stats.retries["RpcUnavailable"] == 1


@pytest.mark.parametrize("kind", ["truncate", "malformed_json"])
async def test_broken_bodies_are_retried_then_reported(small_sim: SimulatorHandle, kind: str) -> None:
    small_sim.faults.add(kind, methods=["getVoteAccounts"], times=1)
    async with fast_client(small_sim.url) as rpc:
        result = await rpc.call("getVoteAccounts")
        assert len(result["current"]) + len(result["delinquent"]) == len(small_sim.cluster.validators)
        assert rpc.stats.retries["RpcMalformed"] == 1
        small_sim.faults.add(kind, methods=["getVoteAccounts"])
        with pytest.raises(RpcMalformed, match=r"truncated|not JSON"):
            await rpc.call("getVoteAccounts")


async def test_retryable_rpc_error_then_success(small_sim: SimulatorHandle) -> None:
    small_sim.faults.add("rpc_error", code=-32005, times=1)
    async with fast_client(small_sim.url) as rpc:
        assert await rpc.call("getHealth") == "ok"
    assert rpc.stats.retries["RpcUnavailable"] == 1


async def test_non_retryable_rpc_error_is_raised_at_once(small_sim: SimulatorHandle) -> None:
    async with fast_client(small_sim.url) as rpc:
        with pytest.raises(RpcResponseError, match="-32601") as info:
            await rpc.call("getNoSuchThing")
        with pytest.raises(RpcResponseError, match="Too many inputs"):
            await rpc.call("getMultipleAccounts", [["11111111111111111111111111111111"] * 101,
                                                   {"encoding": "jsonParsed"}])
    assert info.value.code == -32601
    assert rpc.stats.requests == 2 and rpc.stats.retries == {}


async def test_response_size_bound(small_sim: SimulatorHandle) -> None:
    async with fast_client(small_sim.url, max_response_bytes=20_000) as rpc:
        with pytest.raises(RpcTooLarge, match="20000-byte bound"):
            await rpc.call("getVoteAccounts")
        assert await rpc.call("getSlot") > 0
    assert rpc.stats.requests == 2  # a too-large body is not fetched again


async def test_dead_url_fails_over(small_sim: SimulatorHandle) -> None:
    dead = "http://127.0.0.1:9/"  # discard port: connection refused
    async with fast_client(dead, small_sim.url) as rpc:
        snap = await fetch_cluster_snapshot(rpc)
    assert snap.source == small_sim.url
    assert len(snap.records) == len(small_sim.cluster.validators)
    assert rpc.stats.failovers >= 1


@pytest.mark.parametrize("kind", ["wrong_types", "missing_fields"])
async def test_malformed_vote_entries_become_per_validator_failures(small_sim: SimulatorHandle, kind: str) -> None:
    small_sim.faults.add(kind, methods=["getVoteAccounts"], every=10, times=1)
    async with fast_client(small_sim.url) as rpc:
        snap = await fetch_cluster_snapshot(rpc)
    total = len(small_sim.cluster.validators)
    assert len(snap.failures) == 12  # entries 0, 10, ..., 110 of 120
    assert len(snap.records) == total - 12
    failed = {f.key for f in snap.failures}
    assert failed.isdisjoint({r.vote_pubkey for r in snap.records})
    assert all("activatedStake" in f.reason for f in snap.failures)
    # the records we kept carry the values the node sent, not defaults
    clean = await _clean_vote_accounts(small_sim)
    for record in snap.records:
        assert record.activated_stake == clean[record.vote_pubkey]["activatedStake"]


async def _clean_vote_accounts(sim: SimulatorHandle) -> dict[str, dict[str, object]]:
    answer = sim.cluster.rpc_vote_accounts()
    return {e["votePubkey"]: e for e in answer["current"] + answer["delinquent"]}


@pytest.mark.parametrize("kind", ["wrong_types", "missing_fields"])
async def test_malformed_epoch_info_stops_the_run(small_sim: SimulatorHandle, kind: str) -> None:
    small_sim.faults.add(kind, methods=["getEpochInfo"], times=1)
    async with fast_client(small_sim.url) as rpc:
        with pytest.raises(RecordError, match="absoluteSlot"):
            await fetch_cluster_snapshot(rpc)


async def test_lagging_node_is_detected_and_skipped(small_sim: SimulatorHandle) -> None:
    state = SourceState()
    async with fast_client(small_sim.url) as rpc:
        first = await fetch_cluster_snapshot(rpc, state=state)
        small_sim.advance(slots=200)
        small_sim.faults.add("stale", lag_slots=5_000)
        with pytest.raises(RpcStale, match="behind"):
            await fetch_cluster_snapshot(rpc, state=state)
    assert state.highest_slot == first.slot  # nothing from the lagging node was taken
    healthy = await start_simulator(share_with=small_sim)
    try:
        async with fast_client(small_sim.url, healthy.url) as rpc:
            snap = await fetch_cluster_snapshot(rpc, state=state)
        assert snap.slot == first.slot + 200 and snap.source == healthy.url
    finally:
        await healthy.close()


async def test_stale_vote_accounts_from_a_second_node_are_refused(small_sim: SimulatorHandle) -> None:
    small_sim.faults.add("stale", methods=["getVoteAccounts"], lag_slots=10_000)
    async with fast_client(small_sim.url, max_retries=1) as rpc:
        with pytest.raises(RpcStale, match="lastVote"):
            await fetch_cluster_snapshot(rpc)


async def test_long_retry_after_fails_fast_and_is_remembered(small_sim: SimulatorHandle) -> None:
    small_sim.faults.add("rate_limit", retry_after=120)
    async with fast_client(small_sim.url, max_retry_after=5) as rpc:
        with pytest.raises(RpcUnavailable, match=r"rate limited by every URL for another 1[12][0-9] s"):
            await rpc.call("getSlot")
        with pytest.raises(RpcUnavailable, match="rate limited"):
            await rpc.call("getEpochInfo")  # not sent at all: the URL asked us to stay away
    assert len(small_sim.log) == 1 and rpc.stats.waits == []


async def test_bad_gossip_and_vote_account_entries_leave_only_those_fields_unknown(
    small_sim: SimulatorHandle,
) -> None:
    small_sim.faults.add("missing_fields", methods=["getClusterNodes"], every=5, times=1)
    small_sim.faults.add("wrong_types", methods=["getMultipleAccounts"], every=4, times=1)
    state = SourceState()
    async with fast_client(small_sim.url) as rpc:
        snap = await fetch_cluster_snapshot(rpc, state=state)
        again = await fetch_cluster_snapshot(rpc, state=state)
    assert snap.failures == [] and len(snap.records) == 120
    nodes = {n["pubkey"]: n["version"] for n in small_sim.cluster.rpc_cluster_nodes()}
    unknown_version = [r for r in snap.records if r.version is None]
    assert unknown_version and len(unknown_version) < 40
    for record in snap.records:
        assert record.version in (None, nodes.get(record.identity_pubkey))  # unknown or right, never wrong
        v = small_sim.cluster._by_vote[record.vote_pubkey]
        assert record.authorized_withdrawer in (None, v.withdrawer)
    # every 4th of the first batch of 100 (the fault fires once); the next run asks again for those only
    assert sum(1 for r in snap.records if r.authorized_withdrawer is None) == 25
    assert all(r.authorized_withdrawer for r in again.records)


async def test_malformed_block_production_stops_the_run(small_sim: SimulatorHandle) -> None:
    small_sim.faults.add("wrong_types", methods=["getBlockProduction"])
    async with fast_client(small_sim.url) as rpc:
        with pytest.raises(RecordError, match="byIdentity"):
            await fetch_cluster_snapshot(rpc)
