"""Access control inside the real app (create_app): wallet sign-in → GraphQL with roles → logout, CORS."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from solders.keypair import Keypair

from http_app.app import create_app
from stream_app.settings import Settings
from stream_app.sources.simulator.server import SimulatorHandle, start_simulator


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    handle = await start_simulator(port=0, seed=11, validators=30, epoch_seconds=0)
    yield handle
    await handle.close()


async def gql(client: TestClient, query: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    body: dict[str, Any] = await response.json(content_type=None)
    return response.status, body


async def test_wallet_user_through_the_real_app(
    aiohttp_client: Any, settings: Settings, sim: SimulatorHandle
) -> None:
    configured = settings.with_overrides(cors_origins=("https://app.example",), solana_rpc_urls=(sim.url,),
                                         rate_limit_signin=100)
    client: TestClient = await aiohttp_client(create_app(configured, schema_name=f"auth_{uuid.uuid4().hex[:8]}"))
    wallet = Keypair()
    stake = sim.cluster.add_stake_account(str(wallet.pubkey()), str(wallet.pubkey()), sim.cluster.validators[0].vote,
                                          4 * 10**9)

    preflight = await client.options("/graphql", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status == 200 and preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"

    challenge = await (await client.post("/auth/challenge", json={"address": str(wallet.pubkey())})).json()
    signature = str(wallet.sign_message(challenge["message"].encode()))
    signed_in = await client.post("/auth/verify", json={"message": challenge["message"], "signature": signature})
    assert signed_in.status == 201
    tokens = await signed_in.json()
    access = tokens["accessToken"]

    status, body = await gql(client, "mutation { refreshMyStakeAccounts { stakePubkey stakedAmount } }", access)
    assert status == 200 and body["data"]["refreshMyStakeAccounts"] == [
        {"stakePubkey": stake, "stakedAmount": str(4 * 10**9)}]
    status, body = await gql(client, "{ myStakeAccounts { stakePubkey } }", access)
    assert body["data"]["myStakeAccounts"] == [{"stakePubkey": stake}]
    status, body = await gql(client, "{ users { id } }", access)  # needs read:users (admin)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    status, body = await gql(client, "{ users { id } }")
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    stakes = await (await client.get("/stakes", headers={"Authorization": f"Bearer {access}"})).json()
    assert [a["stakePubkey"] for a in stakes["stakeAccounts"]] == [stake]

    out = await client.post("/auth/logout", headers={"Authorization": f"Bearer {access}"})
    assert out.status == 200
    status, body = await gql(client, "{ myStakeAccounts { stakePubkey } }", access)
    assert status == 401 and body["error"] == "Unauthorized"
