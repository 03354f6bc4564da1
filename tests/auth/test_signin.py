"""Wallet sign-in, refresh and logout end to end: real Ed25519 wallets, real Redis nonces, real users rows."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from solders.keypair import Keypair

from http_app.auth import principal_from_token
from http_app.keys import DB_POOL
from http_app.siws import parse_message
from http_app.tokens import TokenError
from tests.auth.conftest import AppFactory

GENEROUS = {"RATE_LIMIT_SIGNIN": 1000}


async def challenge_for(client: TestClient, wallet: Keypair) -> dict[str, Any]:
    response = await client.post("/auth/challenge", json={"address": str(wallet.pubkey())})
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def submit(client: TestClient, message: str, wallet: Keypair, **extra: Any) -> Any:
    signature = str(wallet.sign_message(message.encode()))
    return await client.post("/auth/verify", json={"message": message, "signature": signature, **extra})


async def sign_in(client: TestClient, wallet: Keypair) -> dict[str, Any]:
    response = await submit(client, (await challenge_for(client, wallet))["message"], wallet)
    assert response.status in (200, 201), await response.text()
    body: dict[str, Any] = await response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_challenge_is_a_siws_message_for_our_domain(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS, SIWS_DOMAIN="stake.example")
    wallet = Keypair()
    body = await challenge_for(client, wallet)
    message = parse_message(body["message"])
    assert message.domain == "stake.example" and message.address == str(wallet.pubkey())
    assert message.uri == "http://stake.example" and message.chain_id == "mainnet" and message.version == "1"
    assert message.nonce == body["nonce"] and len(body["nonce"]) == 32  # 128 random bits, hex
    assert body["input"]["domain"] == "stake.example" and body["input"]["nonce"] == body["nonce"]
    assert body["expiresAt"] == message.expiration_time


async def test_first_sign_in_creates_a_user_with_the_user_role(
    make_client: AppFactory, db_pool: asyncpg.Pool
) -> None:
    client = await make_client(**GENEROUS)
    wallet = Keypair()
    first = await submit(client, (await challenge_for(client, wallet))["message"], wallet)
    assert first.status == 201
    tokens = await first.json()
    assert tokens["tokenType"] == "Bearer" and tokens["expiresIn"] == 86400
    assert tokens["user"]["role"] == "user" and tokens["user"]["walletPubkey"] == str(wallet.pubkey())
    row = await db_pool.fetchrow("SELECT id, role, last_login_at FROM users WHERE wallet_pubkey = $1",
                                 str(wallet.pubkey()))
    assert row is not None and row["role"] == "user" and row["last_login_at"] is not None
    assert str(row["id"]) == tokens["user"]["id"]
    audit = await db_pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.sign_in' AND actor_id = $1",
                                   str(row["id"]))
    assert audit == 1
    me = await (await client.get("/whoami", headers=bearer(tokens["accessToken"]))).json()
    assert me["userId"] == str(row["id"]) and me["role"] == "user" and me["wallet"] == str(wallet.pubkey())
    assert "write:stakes" in me["permissions"]
    again = await sign_in(client, wallet)
    assert again["user"]["id"] == tokens["user"]["id"]
    assert await db_pool.fetchval("SELECT count(*) FROM users") == 1


async def test_reused_nonce_is_refused(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS)
    wallet = Keypair()
    message = (await challenge_for(client, wallet))["message"]
    assert (await submit(client, message, wallet)).status == 201
    replay = await submit(client, message, wallet)
    assert replay.status == 401 and "already used" in (await replay.json())["message"]


async def test_expired_nonce_is_refused(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS, SIWS_NONCE_TTL=0.3)
    wallet = Keypair()
    message = (await challenge_for(client, wallet))["message"]
    await asyncio.sleep(0.5)
    response = await submit(client, message, wallet)
    assert response.status == 401 and response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_wrong_domain_is_refused_and_the_nonce_is_spent(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS)
    wallet = Keypair()
    message = (await challenge_for(client, wallet))["message"]
    phished = message.replace("localhost:3007 wants", "sol-stake.evil.example wants", 1)
    refused = await submit(client, phished, wallet)
    assert refused.status == 401 and "domain" in (await refused.json())["message"]
    assert (await submit(client, message, wallet)).status == 401  # one attempt per challenge


async def test_tampered_message_and_foreign_signature_are_refused(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS)
    wallet, thief = Keypair(), Keypair()
    message = (await challenge_for(client, wallet))["message"]
    tampered = message.replace("Chain ID: mainnet", "Chain ID: devnet")
    assert (await submit(client, tampered, wallet)).status == 401
    message = (await challenge_for(client, wallet))["message"]
    stolen = await submit(client, message, thief)  # a thief cannot sign for the victim's address
    assert stolen.status == 401 and "signature" in (await stolen.json())["message"]


async def test_base64_signature_is_accepted(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS)
    wallet = Keypair()
    message = (await challenge_for(client, wallet))["message"]
    signature = base64.b64encode(bytes(wallet.sign_message(message.encode()))).decode()
    response = await client.post("/auth/verify", json={"message": message, "signature": signature})
    assert response.status == 201


@pytest.mark.parametrize(("path", "body"), [
    ("/auth/challenge", b"not json"),
    ("/auth/challenge", b"[1, 2]"),
    ("/auth/challenge", b'{"address": "not-base58-0OIl"}'),
    ("/auth/challenge", b'{"address": 5}'),
    ("/auth/verify", b'{"message": "x"}'),
    ("/auth/verify", b'{"message": "x", "signature": "%%%"}'),
    ("/auth/refresh", b"{}"),
])
async def test_malformed_requests_get_400_json(make_client: AppFactory, path: str, body: bytes) -> None:
    client = await make_client(**GENEROUS)
    response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"] == "Bad Request"


async def test_concurrent_submissions_of_one_challenge_admit_exactly_one(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS)
    wallet = Keypair()
    message = (await challenge_for(client, wallet))["message"]
    responses = await asyncio.gather(*(submit(client, message, wallet) for _ in range(12)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] + [401] * 11


async def test_refresh_rotates_and_a_spent_refresh_token_is_refused(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS)
    tokens = await sign_in(client, Keypair())
    rotated = await client.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert rotated.status == 200
    fresh = await rotated.json()
    assert fresh["refreshToken"] != tokens["refreshToken"] and fresh["accessToken"] != tokens["accessToken"]
    assert (await client.get("/whoami", headers=bearer(fresh["accessToken"]))).status == 200
    replay = await client.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert replay.status == 401


async def test_access_token_cannot_be_used_to_refresh_and_refresh_cannot_authenticate(
    make_client: AppFactory
) -> None:
    client = await make_client(**GENEROUS)
    tokens = await sign_in(client, Keypair())
    assert (await client.post("/auth/refresh", json={"refreshToken": tokens["accessToken"]})).status == 401
    assert (await client.get("/whoami", headers=bearer(tokens["refreshToken"]))).status == 401


async def test_refresh_picks_up_a_role_change(make_client: AppFactory, db_pool: asyncpg.Pool) -> None:
    client = await make_client(**GENEROUS)
    tokens = await sign_in(client, Keypair())
    await db_pool.execute("UPDATE users SET role = 'admin' WHERE id = $1", int(tokens["user"]["id"]))
    fresh = await (await client.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})).json()
    me = await (await client.get("/whoami", headers=bearer(fresh["accessToken"]))).json()
    assert me["role"] == "admin" and "admin:system" in me["permissions"]


async def test_logout_revokes_access_and_refresh_tokens(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS)
    tokens = await sign_in(client, Keypair())
    auth = bearer(tokens["accessToken"])
    out = await client.post("/auth/logout", json={"refreshToken": tokens["refreshToken"]}, headers=auth)
    assert out.status == 200 and (await out.json())["success"] is True
    after = await client.get("/whoami", headers=auth)
    assert after.status == 401 and (await after.json())["message"] == "token has been revoked"
    assert (await client.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})).status == 401
    with pytest.raises(TokenError) as caught:
        await principal_from_token(client.app, tokens["accessToken"])
    assert caught.value.reason == "revoked"


async def test_logout_needs_a_token(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS)
    assert (await client.post("/auth/logout")).status == 401


async def test_principal_from_token_for_websockets(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS)
    wallet = Keypair()
    tokens = await sign_in(client, wallet)
    principal = await principal_from_token(client.app, tokens["accessToken"])
    assert principal.role == "user" and principal.wallet_pubkey == str(wallet.pubkey())
    for bad in ("", "garbage", tokens["refreshToken"], 42, None):
        with pytest.raises(TokenError):
            await principal_from_token(client.app, bad)  # type: ignore[arg-type]


async def test_revocation_keys_carry_the_prefix_and_expire(make_client: AppFactory, redis_client: Any,
                                                           redis_prefix: str) -> None:
    client = await make_client(**GENEROUS)
    tokens = await sign_in(client, Keypair())
    await client.post("/auth/logout", headers=bearer(tokens["accessToken"]))
    keys = [k.decode() async for k in redis_client.scan_iter(match=f"{redis_prefix}:auth:revoked:*")]
    assert len(keys) == 1
    assert 0 < await redis_client.pttl(keys[0]) <= (86400 + 30) * 1000


async def test_database_down_at_sign_in_is_a_clean_503(make_client: AppFactory) -> None:
    client = await make_client(**GENEROUS)
    wallet = Keypair()
    message = (await challenge_for(client, wallet))["message"]
    await client.app[DB_POOL].close()  # PostgreSQL gone for this app
    response = await submit(client, message, wallet)
    assert response.status == 503
    body = await response.json()
    assert body["error"] == "Service Unavailable" and "Traceback" not in body["message"]
