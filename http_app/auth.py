"""Authentication: who is calling, from the `Authorization: Bearer` access token.

`authenticate` (middleware) sets `request["principal"]`: ANONYMOUS without a token, the token's Principal
when it verifies and is not revoked, and a 401 JSON answer otherwise (never a stack trace).
`principal_from_token(app, token)` does the same for WebSocket `connection_init` payloads.

Verified tokens are remembered for a few seconds (never past their expiry) so a busy client does not pay
an HMAC and JSON decode per request; revocation is still checked on every request (logout is immediate).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from http_app.access_metrics import AUTH_FAILURES, REVOCATION_UNCHECKED
from http_app.principal import ANONYMOUS, Principal
from http_app.tokens import Keyring, TokenError, VerifiedToken, verify_access_token
from stream_app.settings import Settings

PRINCIPAL = "principal"  # request key (a plain string: the API reads request["principal"])
# Paths whose Authorization header is not ours to judge (e.g. a scraper's own bearer token on /metrics).
UNAUTHENTICATED_PATHS = frozenset({"/metrics", "/health", "/healthz", "/readyz"})

_MEMO_SECONDS = 30.0
_MEMO_SIZE = 10_000


@dataclass(frozen=True)
class TokenCheck:
    """The outcome of reading the Authorization header, before any I/O."""

    token: VerifiedToken | None = None
    error: TokenError | None = None

    @property
    def present(self) -> bool:
        return self.token is not None or self.error is not None


NO_TOKEN = TokenCheck()
TOKEN_CHECK = web.RequestKey("access_token_check", TokenCheck)  # computed once per request
REVOCATION_CHECKED = web.RequestKey("access_token_revoked", bool)  # set when the limiter's round trip asked
REDIS_UNAVAILABLE = web.RequestKey("redis_unavailable", bool)  # True when the limiter found Redis down


class VerifiedTokenMemo:
    """A small LRU of recently verified access tokens."""

    def __init__(self, size: int = _MEMO_SIZE, seconds: float = _MEMO_SECONDS) -> None:
        self._entries: OrderedDict[str, tuple[VerifiedToken, float]] = OrderedDict()
        self._size = size
        self._seconds = seconds

    def get(self, token: str, leeway: float) -> VerifiedToken | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        verified, until = entry
        if time.monotonic() >= until or verified.expires_at + leeway <= time.time():
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return verified

    def put(self, token: str, verified: VerifiedToken) -> None:
        self._entries[token] = (verified, time.monotonic() + self._seconds)
        self._entries.move_to_end(token)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class AccessControl:
    """Keys, remembered tokens and the Redis client of the access-control layer (one per app)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyring = Keyring.from_settings(settings)
        self.memo = VerifiedTokenMemo()
        self._redis: aioredis.Redis | None = None

    def attach(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("AccessControl has no Redis client yet (the app has not started)")
        return self._redis

    def revocation_key(self, jti: str) -> str:
        return f"{self.settings.redis_prefix}:auth:revoked:{jti}"

    def verify(self, token: str) -> VerifiedToken:
        """Verify an access token (CPU only); raises TokenError."""
        if not isinstance(token, str):
            raise TokenError("malformed", "token must be a string")
        remembered = self.memo.get(token, self.keyring.leeway)
        if remembered is not None:
            return remembered
        verified = verify_access_token(self.keyring, token)
        self.memo.put(token, verified)
        return verified

    def check_header(self, request: web.Request) -> TokenCheck:
        """Parse and verify the request's bearer token once; the result is kept on the request."""
        known = request.get(TOKEN_CHECK)
        if known is not None:
            return known
        return self.read_header(request)

    def read_header(self, request: web.Request) -> TokenCheck:
        """`check_header` for a caller that knows it is the first to ask (no lookup on the request:
        a missing request key costs a raised KeyError)."""
        check = self._check(request)
        request[TOKEN_CHECK] = check
        return check

    def _check(self, request: web.Request) -> TokenCheck:
        if request.path in UNAUTHENTICATED_PATHS:
            return NO_TOKEN
        header = request.headers.get("Authorization")
        if header is None:
            return NO_TOKEN
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return TokenCheck(error=TokenError("scheme", "only Bearer tokens are accepted"))
        try:
            return TokenCheck(token=self.verify(token.strip()))
        except TokenError as exc:
            return TokenCheck(error=exc)

    async def is_revoked(self, jti: str) -> bool:
        """True when logged out. Redis down: False (fail open, counted), like the rate limiter's reads."""
        try:
            return bool(await self.redis.exists(self.revocation_key(jti)))
        except (RedisError, OSError, TimeoutError):
            REVOCATION_UNCHECKED.inc()
            return False

    async def revoke(self, verified: VerifiedToken) -> None:
        """Deny-list a token's jti until it would expire anyway. Raises when Redis fails (logout must not lie)."""
        remaining = verified.expires_at + self.keyring.leeway - time.time()
        if remaining > 0:
            await self.redis.set(self.revocation_key(verified.jti), b"1", px=max(1, int(remaining * 1000)))


ACCESS_CONTROL: web.AppKey[AccessControl] = web.AppKey("access_control", AccessControl)


def unauthorized(message: str) -> web.Response:
    return web.json_response(
        {"error": "Unauthorized", "message": message},
        status=401,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


async def admit_principal(request: web.Request, check: TokenCheck | None = None) -> web.Response | None:
    """Set request["principal"]; or return the 401 answer when the token must be refused.
    `check`: the request's token check when the caller already has it."""
    control = request.app[ACCESS_CONTROL]
    if check is None:
        check = control.check_header(request)
    if check.error is not None:
        AUTH_FAILURES.labels(check.error.reason).inc()
        return unauthorized(check.error.message)
    principal = ANONYMOUS
    if check.token is not None:
        revoked = request.get(REVOCATION_CHECKED)
        if revoked is None:
            if request.get(REDIS_UNAVAILABLE):
                REVOCATION_UNCHECKED.inc()
                revoked = False
            else:
                revoked = await control.is_revoked(check.token.jti)
        if revoked:
            AUTH_FAILURES.labels("revoked").inc()
            return unauthorized("token has been revoked")
        principal = check.token.principal()
    request[PRINCIPAL] = principal
    return None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    refusal = await admit_principal(request)
    return refusal if refusal is not None else await handler(request)


async def principal_from_token(app: web.Application, token: str) -> Principal:
    """The Principal of an access token (e.g. from a WebSocket connection_init payload).

    Raises TokenError (`.reason`, `.message`) for a bad, expired or revoked token.
    """
    control = app[ACCESS_CONTROL]
    try:
        verified = control.verify(token)
    except TokenError as exc:
        AUTH_FAILURES.labels(exc.reason).inc()
        raise
    if await control.is_revoked(verified.jti):
        AUTH_FAILURES.labels("revoked").inc()
        raise TokenError("revoked", "token has been revoked")
    return verified.principal()
