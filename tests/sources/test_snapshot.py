"""fetch_cluster_snapshot against the simulator over HTTP: counts, the RPC → ValidatorRecord mapping,
epoch rollover with getInflationReward (rugs), and caching of slow-changing data."""

from __future__ import annotations

from stream_app.records import ValidatorRecord
from stream_app.settings import Settings
from stream_app.sources.rpc import RpcUnavailable
from stream_app.sources.simulator.cluster import SLOTS_PER_EPOCH
from stream_app.sources.simulator.server import SimulatorHandle, start_simulator_from_settings
from stream_app.sources.snapshot import SourceState, fetch_cluster_snapshot
from tests.sources.conftest import fast_client


async def test_snapshot_of_the_real_size_cluster(sim: SimulatorHandle) -> None:
    async with fast_client(sim.url) as rpc:
        snap = await fetch_cluster_snapshot(rpc, run_id="run-1")
    assert (snap.current_count, snap.delinquent_count) == (1325, 26)  # as in the e752 snapshot
    assert len(snap.records) == 1351 and snap.failures == [] and snap.missing == ()
    assert snap.epoch == 752 and snap.slot == sim.cluster.slot
    assert snap.total_active_stake == sum(r.activated_stake for r in snap.records)
    header = snap.header(trigger="cli")
    assert (header.run_id, header.expected_count, header.epoch, header.trigger) == ("run-1", 1351, 752, "cli")
    assert header.slot_index == sim.cluster.slot_index and header.source == sim.url
    # ValidatorRecord round-trips through its dict form (what travels on the stream)
    assert ValidatorRecord.from_dict(snap.records[0].to_dict()) == snap.records[0]


async def test_records_carry_every_source_field(sim: SimulatorHandle) -> None:
    async with fast_client(sim.url) as rpc:
        snap = await fetch_cluster_snapshot(rpc)
    by_vote = {r.vote_pubkey: r for r in snap.records}
    raw = sim.cluster.rpc_vote_accounts()
    production = sim.cluster.rpc_block_production()["value"]["byIdentity"]
    nodes = {n["pubkey"]: n for n in sim.cluster.rpc_cluster_nodes()}
    for entry in raw["current"][:50] + raw["delinquent"]:
        record = by_vote[entry["votePubkey"]]
        v = sim.cluster._by_vote[entry["votePubkey"]]
        assert record.identity_pubkey == entry["nodePubkey"]
        assert record.commission == entry["commission"] and record.last_vote == entry["lastVote"]
        assert [list(e) for e in record.epoch_credits] == entry["epochCredits"]
        assert record.delinquent == (entry in raw["delinquent"])
        assert record.authorized_withdrawer == v.withdrawer
        assert record.leader_slots == production.get(v.identity, [0, 0])[0]
        assert record.blocks_produced == production.get(v.identity, [0, 0])[1]
        node = nodes.get(v.identity)
        assert record.version == (node["version"] if node else None)
        assert record.name == (v.info.name if v.info else None)
        earned_751 = any(e == 751 and c > p for e, c, p in record.epoch_credits)
        # rewards of the last finished epoch, only for accounts that earned credits in it
        assert record.applied_commission_epoch == (751 if earned_751 else None)
    # some withdrawers equal the identity: the key-hygiene penalty case
    assert any(r.authorized_withdrawer == r.identity_pubkey for r in snap.records)
    assert sum(1 for r in snap.records if r.name) > 800


async def test_rollover_brings_the_applied_commission_and_exposes_rugs(sim: SimulatorHandle) -> None:
    state = SourceState()
    async with fast_client(sim.url) as rpc:
        before = await fetch_cluster_snapshot(rpc, state=state)
        assert before.rollover_from is None
        # move to the start of epoch 754: epoch 753 (the first with rugs planned) has just finished
        sim.advance(slots=754 * SLOTS_PER_EPOCH + 10 - sim.cluster.slot)
        rollover = await fetch_cluster_snapshot(rpc, state=state)
        sim.advance(slots=5_000)  # the ruggers lower their commission again right after the boundary
        later = await fetch_cluster_snapshot(rpc, state=state)
    assert rollover.epoch == 754 and rollover.rollover_from == 752
    rugs = [(vote, old, new) for epoch, vote, old, new in sim.cluster.rugs if epoch == 753]
    assert rugs, "the seed plans rugs in epoch 753"
    by_vote = {r.vote_pubkey: r for r in later.records}
    for vote, old, new in rugs:
        record = by_vote[vote]
        assert (record.applied_commission, record.applied_commission_epoch) == (new, 753)
        assert record.commission == old  # polled before and after the boundary: looks innocent
    assert later.rollover_from is None  # the same epoch: rewards not fetched again
    calls = sim.requests["getInflationReward"]
    assert calls == 2 * 14  # once per epoch seen (752, 754), batches of 100 for ~1,351 vote accounts


async def test_slow_changing_data_is_cached_between_runs(sim: SimulatorHandle) -> None:
    state = SourceState()
    async with fast_client(sim.url) as rpc:
        await fetch_cluster_snapshot(rpc, state=state)
        first = dict(sim.requests)
        snap = await fetch_cluster_snapshot(rpc, state=state)
    assert sim.requests["getProgramAccounts"] == first["getProgramAccounts"] == 1
    assert sim.requests["getMultipleAccounts"] == first["getMultipleAccounts"]
    assert sim.requests["getVoteAccounts"] == 2
    assert all(r.authorized_withdrawer for r in snap.records)


async def test_failed_info_refresh_keeps_the_cached_copy(sim: SimulatorHandle) -> None:
    state = SourceState()
    async with fast_client(sim.url, max_retries=1) as rpc:
        first = await fetch_cluster_snapshot(rpc, state=state)
        sim.faults.add("server_error", methods=["getProgramAccounts", "getMultipleAccounts"])
        again = await fetch_cluster_snapshot(rpc, state=state, info_ttl=0)
    assert again.warnings and "cached copy" in again.warnings[0]
    assert [r.name for r in again.records] == [r.name for r in first.records]
    assert [r.authorized_withdrawer for r in again.records] == [r.authorized_withdrawer for r in first.records]


async def test_no_info_at_all_is_reported_missing_not_guessed(sim: SimulatorHandle) -> None:
    sim.faults.add("server_error", methods=["getProgramAccounts"])
    async with fast_client(sim.url, max_retries=0) as rpc:
        snap = await fetch_cluster_snapshot(rpc)
    assert snap.missing == ("validator_info",)
    assert all(r.name is None for r in snap.records)


async def test_rewards_not_paid_yet_are_retried_next_run(sim: SimulatorHandle) -> None:
    state = SourceState()
    sim.faults.add("missing_fields", methods=["getInflationReward"], times=14)  # every batch, once
    async with fast_client(sim.url) as rpc:
        early = await fetch_cluster_snapshot(rpc, state=state)
        later = await fetch_cluster_snapshot(rpc, state=state)
    assert any("epoch 751" in w for w in early.warnings)
    assert all(r.applied_commission is None for r in early.records)  # unknown, not guessed
    assert state.applied_epoch == 751 and later.warnings == ()
    assert sum(1 for r in later.records if r.applied_commission_epoch == 751) > 1200


async def test_simulator_from_settings() -> None:
    settings = Settings.from_env({"SIMULATOR_SEED": "9", "SIMULATOR_EPOCH_SECONDS": "60"})
    handle = await start_simulator_from_settings(settings, validators=40, port=0)
    try:
        assert handle.cluster.seed == 9 and len(handle.cluster.validators) == 40
        assert handle.clock.epoch_seconds == 60
    finally:
        await handle.close()


async def test_a_failed_run_at_the_rollover_loses_nothing(sim: SimulatorHandle) -> None:
    state = SourceState()
    async with fast_client(sim.url, max_retries=1) as rpc:
        await fetch_cluster_snapshot(rpc, state=state)
        sim.advance(epochs=1)
        sim.faults.add("server_error", methods=["getVoteAccounts"])
        try:
            await fetch_cluster_snapshot(rpc, state=state)
        except RpcUnavailable:
            pass
        else:
            raise AssertionError("the run should have failed")
        assert state.last_epoch == 752  # the rollover is still ahead
        sim.faults.clear()
        snap = await fetch_cluster_snapshot(rpc, state=state)
    assert snap.epoch == 753 and snap.rollover_from == 752
    assert sum(1 for r in snap.records if r.applied_commission_epoch == 752) > 1200


async def test_mev_commission_is_merged_when_given(small_sim: SimulatorHandle) -> None:
    vote = small_sim.cluster.validators[5].vote
    async with fast_client(small_sim.url) as rpc:
        snap = await fetch_cluster_snapshot(rpc, mev_commission_bps={vote: 800})
    assert {r.vote_pubkey: r.mev_commission_bps for r in snap.records if r.mev_commission_bps is not None} == {
        vote: 800}
