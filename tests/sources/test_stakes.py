"""A wallet's stake accounts from the simulator's Stake program (memcmp staker 12 / withdrawer 44)."""

from __future__ import annotations

import pytest
from solders.pubkey import Pubkey

from stream_app.records import RecordError
from stream_app.sources.simulator.server import SimulatorHandle
from stream_app.sources.stakes import fetch_wallet_stake_accounts
from tests.sources.conftest import fast_client


async def test_demo_wallets_stake_accounts(small_sim: SimulatorHandle) -> None:
    wallets = small_sim.cluster.demo_wallets()
    async with fast_client(small_sim.url) as rpc:
        results = [await fetch_wallet_stake_accounts(rpc, w) for w in wallets]
    for wallet, stakes in zip(wallets, results, strict=True):
        expected = {s.pubkey: s for s in small_sim.cluster.stake_accounts if wallet in (s.staker, s.withdrawer)}
        assert {a.stake_pubkey for a in stakes.accounts} == set(expected)
        assert stakes.failures == [] and stakes.epoch == small_sim.cluster.epoch
        for account in stakes.accounts:
            sim_account = expected[account.stake_pubkey]
            assert account.vote_account == sim_account.vote and account.delegated_stake == sim_account.stake
            assert account.lamports == sim_account.lamports
    states = {a.state for s in results for a in s.accounts}
    assert {"active", "inactive", "deactivating"} <= states
    # the second account of a wallet has another withdrawer: found through the staker filter only
    assert any(a.withdrawer != s.wallet for s in results for a in s.accounts)


async def test_wallet_that_is_only_withdrawer(small_sim: SimulatorHandle) -> None:
    staker, withdrawer = str(Pubkey(bytes([7] * 32))), str(Pubkey(bytes([8] * 32)))
    vote = small_sim.cluster.validators[3].vote
    address = small_sim.cluster.add_stake_account(staker, withdrawer, vote, 42 * 10**9)
    async with fast_client(small_sim.url) as rpc:
        stakes = await fetch_wallet_stake_accounts(rpc, withdrawer)
        nothing = await fetch_wallet_stake_accounts(rpc, str(Pubkey(bytes([9] * 32))))
    assert [(a.stake_pubkey, a.delegated_stake, a.state) for a in stakes.accounts] == [(address, 42 * 10**9, "active")]
    assert stakes.total_delegated == 42 * 10**9
    assert nothing.accounts == []


async def test_invalid_wallet_is_refused_before_any_call(small_sim: SimulatorHandle) -> None:
    async with fast_client(small_sim.url) as rpc:
        with pytest.raises(RecordError, match="wallet: invalid pubkey"):
            await fetch_wallet_stake_accounts(rpc, "not-a-wallet")
    assert rpc.stats.requests == 0


async def test_malformed_stake_entries_are_failures_not_guesses(small_sim: SimulatorHandle) -> None:
    wallet = small_sim.cluster.demo_wallets()[2]
    small_sim.faults.add("wrong_types", methods=["getProgramAccounts"], every=2)
    async with fast_client(small_sim.url) as rpc:
        stakes = await fetch_wallet_stake_accounts(rpc, wallet)
    assert stakes.failures
    assert all(f.reason for f in stakes.failures)
    owned = [s for s in small_sim.cluster.stake_accounts if wallet in (s.staker, s.withdrawer)]
    assert len(stakes.accounts) < len(owned)
