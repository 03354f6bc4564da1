"""`/auth/*`: wallet sign-in (challenge → signed message → tokens), token refresh, logout.

    POST /auth/challenge {"address"}                  → {"input", "message", "nonce", "expiresAt"}
    POST /auth/verify    {"message", "signature"}     → tokens (+ the user row, created on first sign-in)
    POST /auth/refresh   {"refreshToken"}             → new tokens; the old refresh token is spent
    POST /auth/logout    Bearer access [+ {"refreshToken"}] → both deny-listed until they expire

`signature` is base58 (Solana's usual text form) or base64 (ends with "=="). Every failure is a JSON
`{"error", "message"}`: 400 for a malformed request, 401 for a refused proof or token, 503 when Redis or
PostgreSQL cannot be reached (sign-in fails closed: no nonce can be issued or spent without Redis).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from redis.exceptions import RedisError
from solders.pubkey import Pubkey
from solders.signature import Signature

from http_app.access_metrics import AUTH_FAILURES, SIGN_INS
from http_app.auth import ACCESS_CONTROL, TOKEN_CHECK, AccessControl, unauthorized
from http_app.keys import DB_POOL
from http_app.siws import SignInMessage, SiwsError, format_message, iso8601, parse_message, verify_sign_in
from http_app.tokens import (
    Identity,
    TokenError,
    VerifiedToken,
    issue_access_token,
    issue_refresh_token,
    verify_refresh_token,
)

STATEMENT = "Sign in to sol-stake. This request will not trigger a blockchain transaction or cost any fees."
_BACKEND_ERRORS = (RedisError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _bad_request(message: str) -> _Refused:
    return _Refused(web.json_response({"error": "Bad Request", "message": message}, status=400))


def _refused(reason: str, message: str) -> _Refused:
    AUTH_FAILURES.labels(reason).inc()
    return _Refused(unauthorized(message))


def _unavailable() -> web.Response:
    body = {"error": "Service Unavailable", "message": "Sign-in is unavailable right now. Please retry shortly."}
    return web.json_response(body, status=503, headers={"Retry-After": "5"})


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise _bad_request("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _bad_request("body must be a JSON object")
    return body


def _text_field(body: dict[str, Any], *names: str) -> str:
    for name in names:
        value = body.get(name)
        if isinstance(value, str) and value:
            return value
    raise _bad_request(f"{names[0]} is required (a string)")


def _nonce_key(control: AccessControl, nonce: str) -> str:
    return f"{control.settings.redis_prefix}:siws:nonce:{nonce}"


def decode_signature(text: str) -> bytes:
    """base58 (what Solana tools print) or base64 (a 64-byte value always ends with '==')."""
    try:
        if text.endswith("=="):
            return base64.b64decode(text, validate=True)
        return bytes(Signature.from_string(text))
    except (ValueError, binascii.Error):
        raise _bad_request("signature must be 64 bytes in base58 or base64") from None


AuthHandler = Callable[[web.Request, AccessControl], Awaitable[web.Response]]


def _wrap(handler: AuthHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Refusals become their JSON answers; an unreachable Redis or PostgreSQL a 503, never a trace."""

    async def run(request: web.Request) -> web.Response:
        try:
            return await handler(request, request.app[ACCESS_CONTROL])
        except _Refused as refused:
            return refused.response
        except _BACKEND_ERRORS:
            return _unavailable()

    return run


async def challenge(request: web.Request, control: AccessControl) -> web.Response:
    body = await _json_body(request)
    address = _text_field(body, "address", "publicKey", "walletPubkey")
    try:
        Pubkey.from_string(address)
    except ValueError:
        raise _bad_request("address must be a base58 Solana public key") from None
    settings = control.settings
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=settings.siws_nonce_ttl)
    scheme = "https" if settings.production else "http"
    message = SignInMessage(
        domain=settings.siws_domain,
        address=address,
        statement=STATEMENT,
        uri=settings.siws_uri or f"{scheme}://{settings.siws_domain}",
        chain_id=settings.siws_chain_id,
        nonce=secrets.token_hex(16),
        issued_at=iso8601(now),
        expiration_time=iso8601(expires),
    )
    try:
        text = format_message(message)
    except SiwsError as exc:
        raise _bad_request(exc.message) from None
    assert message.nonce is not None
    stored = await control.redis.set(
        _nonce_key(control, message.nonce), text.encode(), px=int(settings.siws_nonce_ttl * 1000), nx=True
    )
    if not stored:  # 128 random bits collided: refuse rather than reuse
        return _unavailable()
    return web.json_response(
        {"input": message.to_json(), "message": text, "nonce": message.nonce, "expiresAt": iso8601(expires)}
    )


async def verify(request: web.Request, control: AccessControl) -> web.Response:
    body = await _json_body(request)
    text = _text_field(body, "message", "signedMessage")
    signature = decode_signature(_text_field(body, "signature"))
    try:
        signed = parse_message(text)
    except SiwsError as exc:
        raise _refused(exc.reason, exc.message) from None
    if signed.nonce is None:
        raise _refused("nonce", "message has no nonce")
    # Spent before checking the signature: each challenge gets exactly one attempt.
    stored = await control.redis.getdel(_nonce_key(control, signed.nonce))
    if stored is None:
        raise _refused("nonce", "sign-in challenge is unknown, expired or already used")
    try:
        challenge_text = stored.decode() if isinstance(stored, bytes) else stored
        verify_sign_in(parse_message(challenge_text), text, signature, datetime.now(UTC))
    except SiwsError as exc:
        raise _refused(exc.reason, exc.message) from None
    identity, first = await _sign_in_user(request.app[DB_POOL], signed.address)
    SIGN_INS.labels(str(first).lower()).inc()
    return _tokens_response(control, identity, status=201 if first else 200)


async def _sign_in_user(pool: asyncpg.Pool, wallet: str) -> tuple[Identity, bool]:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO users (wallet_pubkey, last_login_at) VALUES ($1, now())
            ON CONFLICT (wallet_pubkey) DO UPDATE SET last_login_at = now(), updated_at = now()
            RETURNING id, role, email, (xmax = 0) AS created
            """,
            wallet,
        )
        await conn.execute(
            "INSERT INTO audit_log (action, actor_id, metadata) VALUES ('auth.sign_in', $1, $2)",
            str(row["id"]), {"wallet": wallet, "firstSignIn": row["created"]},
        )
    identity = Identity(user_id=str(row["id"]), role=row["role"], email=row["email"], wallet_pubkey=wallet)
    return identity, bool(row["created"])


def _tokens_response(control: AccessControl, identity: Identity, status: int = 200) -> web.Response:
    keyring = control.keyring
    return web.json_response(
        {
            "accessToken": issue_access_token(keyring, identity),
            "refreshToken": issue_refresh_token(keyring, identity),
            "tokenType": "Bearer",
            "expiresIn": int(keyring.access_ttl),
            "refreshExpiresIn": int(keyring.refresh_ttl),
            "user": {"id": identity.user_id, "walletPubkey": identity.wallet_pubkey,
                     "role": identity.role, "email": identity.email},
        },
        status=status,
    )


def _verified_refresh(control: AccessControl, token: str) -> VerifiedToken:
    try:
        return verify_refresh_token(control.keyring, token)
    except TokenError as exc:
        raise _refused(exc.reason, exc.message) from None


async def _spend(control: AccessControl, verified: VerifiedToken) -> bool:
    """Deny-list a token once; False when it already was (a replayed refresh token)."""
    remaining_ms = int((verified.expires_at + control.keyring.leeway) * 1000 - datetime.now(UTC).timestamp() * 1000)
    result = await control.redis.set(
        control.revocation_key(verified.jti), b"1", px=max(1, remaining_ms), nx=True
    )
    return bool(result)


async def refresh(request: web.Request, control: AccessControl) -> web.Response:
    body = await _json_body(request)
    verified = _verified_refresh(control, _text_field(body, "refreshToken"))
    if not await _spend(control, verified):
        raise _refused("revoked", "refresh token has already been used or revoked")
    row = await request.app[DB_POOL].fetchrow(
        "SELECT id, role, email, wallet_pubkey FROM users WHERE id = $1", _user_id(verified)
    )
    if row is None:
        raise _refused("unknown_user", "the user of this token no longer exists")
    identity = Identity(user_id=str(row["id"]), role=row["role"], email=row["email"],
                        wallet_pubkey=row["wallet_pubkey"])
    return _tokens_response(control, identity)


def _user_id(verified: VerifiedToken) -> int:
    try:
        return int(verified.user_id)
    except ValueError:
        raise _refused("unknown_user", "token is not for a signed-in user") from None


async def logout(request: web.Request, control: AccessControl) -> web.Response:
    check = request.get(TOKEN_CHECK)
    if check is None or check.token is None:
        raise _refused("missing", "logout needs the access token in the Authorization header")
    body = await _json_body(request) if request.can_read_body else {}
    refresh_text = body.get("refreshToken")
    refresh_token = None
    if refresh_text is not None:
        refresh_token = _verified_refresh(control, str(refresh_text))
        if refresh_token.user_id != check.token.user_id:
            raise _refused("claims", "refresh token belongs to another user")
    await control.revoke(check.token)
    if refresh_token is not None:
        await control.revoke(refresh_token)
    return web.json_response({"success": True, "message": "Signed out"})


def setup_auth_routes(app: web.Application) -> None:
    app.router.add_post("/auth/challenge", _wrap(challenge))
    app.router.add_post("/auth/verify", _wrap(verify))
    app.router.add_post("/auth/refresh", _wrap(refresh))
    app.router.add_post("/auth/logout", _wrap(logout))
