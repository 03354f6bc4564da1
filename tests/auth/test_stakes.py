"""write:stakes: a wallet's Stake-program accounts from the RPC simulator, stored, judged, and kept private."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from solders.keypair import Keypair

from http_app.principal import ROLE_PERMISSIONS, Principal
from http_app.stakes import StakeAccessError, refresh_wallet_stakes, stake_overview
from http_app.tokens import Identity, Keyring, issue_access_token
from stream_app.sources.rpc import RpcClient
from stream_app.sources.simulator.server import SimulatorHandle, start_simulator
from tests.auth.conftest import AppFactory


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    handle = await start_simulator(port=0, seed=7, validators=40, epoch_seconds=0)
    yield handle
    await handle.close()


def rpc(sim: SimulatorHandle) -> RpcClient:
    return RpcClient([sim.url], timeout=2.0, max_retries=2, backoff_base=0.01, backoff_cap=0.05)


async def add_user(pool: asyncpg.Pool, wallet: str, role: str = "user") -> Principal:
    user_id = await pool.fetchval("INSERT INTO users (wallet_pubkey, role) VALUES ($1, $2) RETURNING id", wallet, role)
    return Principal(user_id=str(user_id), role=role, permissions=ROLE_PERMISSIONS[role], wallet_pubkey=wallet)


async def add_validator(pool: asyncpg.Pool, vote: str, score: float | None, *, epoch: int = 500,
                        delinquent: bool = False) -> int:
    return int(await pool.fetchval(
        """INSERT INTO validators (vote_account, validator_pubkey, name, commission, latest_score, last_seen_epoch,
                                   delinquent)
           VALUES ($1, $1, $2, 5, $3, $4, $5) RETURNING id""",
        vote, f"name-{vote[:6]}", score, epoch, delinquent,
    ))


async def test_refresh_stores_the_wallets_accounts_and_overview_judges_them(
    sim: SimulatorHandle, db_pool: asyncpg.Pool
) -> None:
    wallet = str(Keypair().pubkey())
    votes = [v.vote for v in sim.cluster.validators[:6]]
    rugged = await add_validator(db_pool, votes[0], 40.0)
    await add_validator(db_pool, votes[1], 60.0)
    await add_validator(db_pool, votes[2], 95.0)
    await add_validator(db_pool, votes[3], 90.0)
    await add_validator(db_pool, votes[4], 99.0, delinquent=True)  # never suggested
    rugger = await add_validator(db_pool, votes[5], 98.0)  # rugged recently: never suggested
    await db_pool.execute("INSERT INTO commission_events (validator_id, epoch, kind) VALUES ($1, 498, 'rug'), "
                          "($2, 497, 'rug')", rugged, rugger)
    first = sim.cluster.add_stake_account(wallet, wallet, votes[0], 5 * 10**9)
    second = sim.cluster.add_stake_account(str(Keypair().pubkey()), wallet, votes[1], 7 * 10**9)
    principal = await add_user(db_pool, wallet)

    async with rpc(sim) as client:
        summary = await refresh_wallet_stakes(db_pool, client, principal)
    assert (summary.wallet, summary.accounts, summary.failures) == (wallet, 2, 0)
    rows = await db_pool.fetch("SELECT stake_pubkey, user_id, staked_amount, state, validator_id IS NOT NULL AS "
                               "known FROM stake_accounts ORDER BY staked_amount")
    assert [(r["stake_pubkey"], r["staked_amount"], r["state"], r["known"]) for r in rows] == [
        (first, 5 * 10**9, "active", True), (second, 7 * 10**9, "active", True)]
    assert all(str(r["user_id"]) == principal.user_id for r in rows)

    overview = {a["stakePubkey"]: a for a in await stake_overview(db_pool, principal)}
    rug = overview[first]
    assert rug["validator"]["latestScore"] == 40.0 and rug["recentRug"] is True and rug["rugEpoch"] == 498
    assert [s["voteAccount"] for s in rug["suggestions"]] == [votes[2], votes[3], votes[1]]
    fine = overview[second]
    assert fine["recentRug"] is False and fine["stakedAmount"] == str(7 * 10**9)
    assert [s["latestScore"] for s in fine["suggestions"]] == [95.0, 90.0]
    audit = await db_pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'stakes.refresh'")
    assert audit == 1


async def test_an_account_gone_from_chain_is_removed_on_the_next_refresh(
    sim: SimulatorHandle, db_pool: asyncpg.Pool
) -> None:
    wallet = str(Keypair().pubkey())
    principal = await add_user(db_pool, wallet)
    vote = sim.cluster.validators[0].vote
    sim.cluster.add_stake_account(wallet, wallet, vote, 10**9)
    async with rpc(sim) as client:
        await refresh_wallet_stakes(db_pool, client, principal)
        owned = [s for s in sim.cluster.stake_accounts if wallet in (s.staker, s.withdrawer)]
        for account in owned:  # closed on chain
            sim.cluster.stake_accounts.remove(account)
        summary = await refresh_wallet_stakes(db_pool, client, principal)
    assert summary.accounts == 0 and summary.removed == 1
    assert await stake_overview(db_pool, principal) == []


async def test_users_only_see_their_own_stake_accounts(sim: SimulatorHandle, db_pool: asyncpg.Pool) -> None:
    alice, bob = str(Keypair().pubkey()), str(Keypair().pubkey())
    alice_p, bob_p = await add_user(db_pool, alice), await add_user(db_pool, bob)
    admin = await add_user(db_pool, str(Keypair().pubkey()), role="admin")
    vote = sim.cluster.validators[0].vote
    sim.cluster.add_stake_account(alice, alice, vote, 10**9)
    async with rpc(sim) as client:
        await refresh_wallet_stakes(db_pool, client, alice_p)
    assert len(await stake_overview(db_pool, alice_p)) == 1
    assert await stake_overview(db_pool, bob_p) == []
    with pytest.raises(StakeAccessError):
        await stake_overview(db_pool, bob_p, user_id=int(alice_p.user_id or 0))
    assert len(await stake_overview(db_pool, admin, user_id=int(alice_p.user_id or 0))) == 1


async def test_refresh_needs_write_stakes_and_a_wallet(sim: SimulatorHandle, db_pool: asyncpg.Pool) -> None:
    viewer = await add_user(db_pool, str(Keypair().pubkey()), role="viewer")
    walletless = Principal(user_id="test-user", role="user", permissions=ROLE_PERMISSIONS["user"])
    async with rpc(sim) as client:
        for principal in (viewer, walletless):
            with pytest.raises(StakeAccessError):
                await refresh_wallet_stakes(db_pool, client, principal)
        assert client.stats.requests == 0


async def test_rest_routes_refresh_and_list(
    sim: SimulatorHandle, make_client: AppFactory, db_pool: asyncpg.Pool, keyring: Keyring,
    token_for: Callable[..., str],
) -> None:
    wallet = str(Keypair().pubkey())
    principal = await add_user(db_pool, wallet)
    sim.cluster.add_stake_account(wallet, wallet, sim.cluster.validators[2].vote, 3 * 10**9)
    client = await make_client(SOLANA_RPC_URLS=(sim.url,))
    token = issue_access_token(keyring, Identity(user_id=principal.user_id or "", role="user", wallet_pubkey=wallet))
    auth = {"Authorization": f"Bearer {token}"}
    refreshed = await client.post("/stakes/refresh", headers=auth)
    assert refreshed.status == 200, await refreshed.text()
    body: dict[str, Any] = await refreshed.json()
    assert body["refresh"]["accounts"] == 1 and body["stakeAccounts"][0]["stakedAmount"] == str(3 * 10**9)
    listed = await (await client.get("/stakes", headers=auth)).json()
    assert listed["stakeAccounts"] == body["stakeAccounts"]
    assert (await client.get("/stakes")).status == 401
    viewer = {"Authorization": f"Bearer {token_for('viewer')}"}
    assert (await client.post("/stakes/refresh", headers=viewer)).status == 403
    other = {"Authorization": f"Bearer {token_for('user', user_id='999')}"}
    assert (await client.get(f"/stakes?userId={principal.user_id}", headers=other)).status == 403
    assert (await client.get("/stakes?userId=abc", headers=auth)).status == 400
