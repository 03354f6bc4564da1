"""JWT access and refresh tokens: issue and verify (RFC 8725 practices), no I/O.

Access tokens carry the seed's claims (`userId`, `email`, `role`, `permissions`, `iat`, `exp`) plus `iss`,
`aud`, `sub`, `jti`; the header carries `typ` (`at+jwt` / `refresh+jwt`, RFC 8725 §3.11) and `kid`.
Refresh tokens have a different `typ` AND a different audience, so neither kind can stand in for the other.

Verification never reads the algorithm or key from the token: the only algorithm is HS256, keys come from a
local `{kid: secret}` map, and `kid` is used only as a dictionary key (RFC 8725 §3.1, §3.10).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jwt
from jwt.utils import base64url_decode

from http_app.principal import ROLE_PERMISSIONS, Principal
from stream_app.settings import Settings

ALGORITHM = "HS256"
ACCESS_TYP = "at+jwt"
REFRESH_TYP = "refresh+jwt"
REFRESH_AUDIENCE_SUFFIX = ":refresh"
MIN_SECRET_BYTES = 32
# Header parameters that would let a token choose its own key or extensions: never honoured, so refused.
_FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit"})
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]
_MAX_TOKEN_LENGTH = 8192


class TokenError(Exception):
    """A token that must not be accepted. `reason` is a short, stable code (also a metric label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Keyring:
    """Signing keys by `kid`; `active_kid` signs new tokens, every key in `keys` verifies."""

    keys: Mapping[str, bytes]
    active_kid: str
    issuer: str
    audience: str
    access_ttl: float
    refresh_ttl: float
    leeway: float

    def __post_init__(self) -> None:
        if self.active_kid not in self.keys:
            raise ValueError(f"active kid {self.active_kid!r} is not in the key map")
        for kid, key in self.keys.items():
            if len(key) < MIN_SECRET_BYTES:
                raise ValueError(f"key {kid!r} is shorter than {MIN_SECRET_BYTES} bytes (RFC 7518 §3.2)")

    @property
    def refresh_audience(self) -> str:
        return self.audience + REFRESH_AUDIENCE_SUFFIX

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        """JWT_SECRET signs; it and JWT_PREVIOUS_SECRETS verify. Each key's kid is derived from the key, so a
        token names the secret that signed it and rotation needs no coordination."""
        active = jwt_secret(settings)
        keys = {key_id(old.encode()): old.encode() for old in settings.jwt_previous_secrets}
        keys[key_id(active)] = active
        return cls(
            keys=keys,
            active_kid=key_id(active),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl=settings.jwt_expiry,
            refresh_ttl=settings.jwt_refresh_expiry,
            leeway=settings.jwt_leeway,
        )


DEV_SECRET_FILE = "dev-jwt-secret"


def key_id(secret: bytes) -> str:
    """A short public name for a secret (8 bytes of a domain-separated SHA-256; reveals nothing usable)."""
    return hashlib.sha256(b"sol-stake kid\x00" + secret).hexdigest()[:16]


def jwt_secret(settings: Settings) -> bytes:
    """JWT_SECRET; in development without one, a random secret kept in the data dir (shared by web and CLI)."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.encode()
    if settings.production:
        raise ValueError("JWT_SECRET is required when SOLSTAKE_PROFILE=production")
    path = settings.embedded_dir / DEV_SECRET_FILE
    if not path.exists():
        # Written aside then linked into place, so a concurrent reader never sees a half-written file.
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process won; use its secret
        finally:
            draft.unlink()
    return path.read_text().strip().encode()


@dataclass(frozen=True)
class Identity:
    """Who a token is for. `user_id` is the `users.id` (as text, like the seed's `userId`)."""

    user_id: str
    role: str
    email: str | None = None
    wallet_pubkey: str | None = None

    @property
    def subject(self) -> str:
        return self.wallet_pubkey or f"user:{self.user_id}"


@dataclass(frozen=True)
class VerifiedToken:
    """Immutable once verified, so derived values are computed once (a remembered token is reused a lot)."""

    claims: dict[str, Any]
    typ: str

    @cached_property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @cached_property
    def expires_at(self) -> float:
        return float(self.claims["exp"])

    @cached_property
    def user_id(self) -> str:
        return str(self.claims["userId"])

    def principal(self) -> Principal:
        return self._principal

    @cached_property
    def _principal(self) -> Principal:
        """Permissions come from the server's role table, not from the token's list (RFC 8725 §3.10)."""
        role = self.claims["role"]
        return Principal(
            user_id=self.user_id,
            role=role,
            permissions=ROLE_PERMISSIONS[role],
            wallet_pubkey=self.claims.get("walletPubkey"),
            token_id=self.jti,
        )


def issue_access_token(keyring: Keyring, identity: Identity, *, now: float | None = None) -> str:
    if identity.role not in ROLE_PERMISSIONS:
        raise ValueError(f"unknown role {identity.role!r}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "userId": identity.user_id,
        "email": identity.email,
        "role": identity.role,
        "permissions": sorted(ROLE_PERMISSIONS[identity.role]),
        "iat": issued,
        "exp": issued + int(keyring.access_ttl),
        "iss": keyring.issuer,
        "aud": keyring.audience,
        "sub": identity.subject,
        "jti": uuid.uuid4().hex,
    }
    if identity.wallet_pubkey is not None:
        claims["walletPubkey"] = identity.wallet_pubkey
    return _sign(keyring, claims, ACCESS_TYP)


def issue_refresh_token(keyring: Keyring, identity: Identity, *, now: float | None = None) -> str:
    """Only who the user is: the role is re-read from the database when the token is used."""
    issued = int(time.time() if now is None else now)
    claims = {
        "userId": identity.user_id,
        "iat": issued,
        "exp": issued + int(keyring.refresh_ttl),
        "iss": keyring.issuer,
        "aud": keyring.refresh_audience,
        "sub": identity.subject,
        "jti": uuid.uuid4().hex,
    }
    return _sign(keyring, claims, REFRESH_TYP)


def _sign(keyring: Keyring, claims: dict[str, Any], typ: str) -> str:
    headers = {"typ": typ, "kid": keyring.active_kid}
    return jwt.encode(claims, keyring.keys[keyring.active_kid], algorithm=ALGORITHM, headers=headers)


def verify_access_token(keyring: Keyring, token: str, *, now: float | None = None) -> VerifiedToken:
    verified = _verify(keyring, token, ACCESS_TYP, keyring.audience, now)
    claims = verified.claims
    if claims.get("role") not in ROLE_PERMISSIONS:
        raise TokenError("claims", "token names an unknown role")
    if not isinstance(claims.get("permissions"), list):
        raise TokenError("claims", "token has no permissions list")
    return verified


def verify_refresh_token(keyring: Keyring, token: str, *, now: float | None = None) -> VerifiedToken:
    return _verify(keyring, token, REFRESH_TYP, keyring.refresh_audience, now)


def _verify(keyring: Keyring, token: str, typ: str, audience: str, now: float | None) -> VerifiedToken:
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
        raise TokenError("malformed", "token is empty or too long")
    header = _unverified_header(token)
    if header.get("alg") != ALGORITHM:
        raise TokenError("algorithm", f"token algorithm must be {ALGORITHM}")
    if header.get("typ") != typ:
        raise TokenError("typ", f"token type must be {typ}")
    if _FORBIDDEN_HEADERS.intersection(header):
        raise TokenError("header", "token header carries parameters this server never honours")
    kid = header.get("kid", keyring.active_kid)
    key = keyring.keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenError("kid", "token key id is unknown")
    try:
        claims = _decode(token, key, keyring, audience, now)
    except jwt.ExpiredSignatureError:
        raise TokenError("expired", "token has expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError("missing_claim", f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidAudienceError:
        raise TokenError("audience", "token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise TokenError("issuer", "token is from another issuer") from None
    except jwt.ImmatureSignatureError:
        raise TokenError("not_yet_valid", "token is not valid yet") from None
    except jwt.InvalidSignatureError:
        raise TokenError("signature", "token signature does not verify") from None
    except jwt.InvalidTokenError:
        raise TokenError("malformed", "token could not be verified") from None
    if not isinstance(claims.get("userId"), str) or not isinstance(claims.get("jti"), str):
        raise TokenError("claims", "token userId and jti must be strings")
    return VerifiedToken(claims=claims, typ=typ)


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to refuse early; nothing in it selects a key or an algorithm."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed", "token is not a well-formed JWT")
    try:
        header = json.loads(base64url_decode(parts[0]))
    except (ValueError, binascii.Error):
        raise TokenError("malformed", "token header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise TokenError("malformed", "token header is not a JSON object")
    return header


def _decode(token: str, key: bytes, keyring: Keyring, audience: str, now: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {"require": _REQUIRED_CLAIMS, "strict_aud": True, "enforce_minimum_key_length": True}
    if now is None:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=audience, issuer=keyring.issuer,
            leeway=keyring.leeway, options=options,  # type: ignore[arg-type]
        )
        return claims
    # Checking at an explicit instant (tests, CLI): pyjwt reads the wall clock, so check times here.
    options.update(verify_exp=False, verify_iat=False, verify_nbf=False)
    claims = jwt.decode(
        token, key, algorithms=[ALGORITHM], audience=audience, issuer=keyring.issuer,
        options=options,  # type: ignore[arg-type]
    )
    _check_times(claims, now, keyring.leeway)
    return claims


def _check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise jwt.InvalidTokenError("exp and iat must be numbers")
    if exp <= now - leeway:
        raise jwt.ExpiredSignatureError("expired")
    if iat > now + leeway:
        raise jwt.ImmatureSignatureError("issued in the future")
    if nbf is not None and (not isinstance(nbf, int | float) or nbf > now + leeway):
        raise jwt.ImmatureSignatureError("not yet valid")
