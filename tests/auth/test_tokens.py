"""Access and refresh tokens: claims, round trips, and one negative test per RFC 8725 rule."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from http_app.principal import ROLE_PERMISSIONS
from http_app.tokens import (
    ACCESS_TYP,
    REFRESH_TYP,
    Identity,
    Keyring,
    TokenError,
    issue_access_token,
    issue_refresh_token,
    key_id,
    verify_access_token,
    verify_refresh_token,
)
from stream_app.settings import Settings, SettingsError
from tests.auth.rsa_for_tests import RsaKey, b64url, compact

SECRET = b"s" * 40
KEYRING = Keyring(keys={"k1": SECRET}, active_kid="k1", issuer="sol-stake", audience="sol-stake-api",
                  access_ttl=86400, refresh_ttl=30 * 86400, leeway=30)
ADMIN = Identity(user_id="7", role="admin", email="ops@example.com", wallet_pubkey=None)
NOW = 1_800_000_000


def good_claims(**changes: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "userId": "7", "email": None, "role": "user", "permissions": sorted(ROLE_PERMISSIONS["user"]),
        "iat": NOW, "exp": NOW + 3600, "iss": "sol-stake", "aud": "sol-stake-api", "sub": "user:7",
        "jti": "a" * 32,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not ...}


def forge(claims: dict[str, object], *, key: bytes = SECRET, alg: str = "HS256", **header: object) -> str:
    headers: dict[str, object] = {"typ": ACCESS_TYP, "kid": "k1"}
    headers.update(header)
    headers = {k: v for k, v in headers.items() if v is not ...}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def forge_raw(claims: dict[str, object], *, key: bytes = SECRET, **header: object) -> str:
    """HS256 by hand, for headers and keys pyjwt itself refuses to produce."""
    headers: dict[str, object] = {"alg": "HS256", "typ": ACCESS_TYP, "kid": "k1"}
    headers.update(header)
    return compact(headers, claims, lambda data: hmac.new(key, data, hashlib.sha256).digest())


def reason(token: str, *, now: float = NOW) -> str:
    with pytest.raises(TokenError) as caught:
        verify_access_token(KEYRING, token, now=now)
    return caught.value.reason


roles = st.sampled_from(sorted(ROLE_PERMISSIONS))
user_ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
emails = st.none() | st.emails()


@given(role=roles, user_id=user_ids, email=emails)
def test_access_token_round_trip_carries_the_seed_claims(role: str, user_id: str, email: str | None) -> None:
    token = issue_access_token(KEYRING, Identity(user_id=user_id, role=role, email=email), now=NOW)
    verified = verify_access_token(KEYRING, token, now=NOW + 10)
    claims = verified.claims
    assert {"userId", "email", "role", "permissions", "iat", "exp", "iss", "aud", "sub", "jti"} <= set(claims)
    assert claims["userId"] == user_id and claims["email"] == email and claims["role"] == role
    assert claims["permissions"] == sorted(ROLE_PERMISSIONS[role])
    assert claims["exp"] - claims["iat"] == 86400
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": ACCESS_TYP, "kid": "k1"}
    principal = verified.principal()
    assert principal.user_id == user_id and principal.role == role
    assert principal.permissions == ROLE_PERMISSIONS[role] and principal.token_id == claims["jti"]


@given(role=roles)
def test_every_token_gets_its_own_jti(role: str) -> None:
    identity = Identity(user_id="1", role=role)
    first, second = (verify_access_token(KEYRING, issue_access_token(KEYRING, identity, now=NOW), now=NOW)
                     for _ in range(2))
    assert first.jti != second.jti


def test_default_lifetime_is_24_hours_from_settings(settings: Settings) -> None:
    keyring = Keyring.from_settings(settings)
    token = issue_access_token(keyring, ADMIN)
    claims = verify_access_token(keyring, token).claims
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert abs(claims["iat"] - time.time()) < 120


def test_permissions_come_from_the_role_table_not_the_token() -> None:
    claims = good_claims(role="viewer", permissions=["admin:system", "read:users"])
    principal = verify_access_token(KEYRING, forge(claims), now=NOW).principal()
    assert principal.permissions == ROLE_PERMISSIONS["viewer"]
    assert not principal.can("admin:system")


def test_wallet_identity_becomes_the_subject() -> None:
    wallet = "Vote111111111111111111111111111111111111111"
    token = issue_access_token(KEYRING, Identity(user_id="3", role="user", wallet_pubkey=wallet), now=NOW)
    verified = verify_access_token(KEYRING, token, now=NOW)
    assert verified.claims["sub"] == wallet and verified.principal().wallet_pubkey == wallet


# --- RFC 8725 negatives -------------------------------------------------------------------------


def test_alg_none_is_refused() -> None:
    unsigned = b64url(b'{"alg":"none","typ":"at+jwt"}') + "." + b64url(json.dumps(good_claims()).encode())
    assert reason(unsigned + ".") == "algorithm"
    assert reason(forge(good_claims(), key=None, alg="none")) == "algorithm"  # type: ignore[arg-type]


def test_rs256_token_is_refused_even_when_genuinely_signed() -> None:
    rsa = RsaKey()
    token = compact({"alg": "RS256", "typ": ACCESS_TYP, "kid": "k1"}, good_claims(), rsa.sign)
    signing_input, _, signature = token.rpartition(".")
    assert rsa.verify(signing_input.encode(), jwt.utils.base64url_decode(signature))  # the forgery is real RS256
    assert reason(token) == "algorithm"


def test_hmac_signed_with_a_public_key_is_refused() -> None:
    # The classic confusion: the attacker uses a public key as an HMAC secret. Our HMAC key is never public.
    public = RsaKey().public_pem_like()
    assert reason(forge_raw(good_claims(), key=public)) == "signature"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the forger's key, on purpose
@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_refused_even_with_our_key(alg: str) -> None:
    assert reason(forge(good_claims(), alg=alg)) == "algorithm"


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub", "jti"])
def test_missing_required_claim_is_refused(claim: str) -> None:
    assert reason(forge(good_claims(**{claim: ...}))) == "missing_claim"


def test_expired_beyond_leeway_is_refused_and_within_leeway_accepted() -> None:
    token = forge(good_claims(exp=NOW - 31))
    assert reason(token) == "expired"
    assert verify_access_token(KEYRING, forge(good_claims(exp=NOW - 29)), now=NOW).claims["exp"] == NOW - 29


def test_expired_is_refused_on_the_wall_clock_path_too() -> None:
    old = int(time.time()) - 7200
    with pytest.raises(TokenError) as caught:
        verify_access_token(KEYRING, forge(good_claims(iat=old, exp=old + 60)))
    assert caught.value.reason == "expired"


def test_future_nbf_and_iat_are_refused() -> None:
    assert reason(forge(good_claims(nbf=NOW + 600))) == "not_yet_valid"
    assert reason(forge(good_claims(iat=NOW + 600, exp=NOW + 4000))) == "not_yet_valid"


@pytest.mark.parametrize("aud", ["other-api", ["other-api"], "sol-stake-api:refresh", ["sol-stake-api", "x"]])
def test_wrong_audience_is_refused(aud: object) -> None:
    assert reason(forge(good_claims(aud=aud))) == "audience"


@pytest.mark.parametrize("iss", ["evil", "sol-stak", "sol-stake-evil", ""])
def test_wrong_issuer_is_refused(iss: str) -> None:
    assert reason(forge(good_claims(iss=iss))) == "issuer"


@pytest.mark.parametrize("typ", ["JWT", "refresh+jwt", "at+JWT", ...])
def test_wrong_or_missing_typ_is_refused(typ: object) -> None:
    assert reason(forge(good_claims(), typ=typ)) == "typ"


@pytest.mark.parametrize("kid", ["../../../dev/null", "' OR 1=1 --", "k2", "", 1, None, ["k1"]])
def test_injected_or_unknown_kid_is_refused(kid: object) -> None:
    assert reason(forge_raw(good_claims(), kid=kid)) == "kid"


@pytest.mark.parametrize("header", [{"crit": ["exp"]}, {"jku": "https://evil.example/jwks"},
                                    {"x5u": "https://evil.example/cert"}, {"jwk": {"kty": "oct", "k": "AA"}}])
def test_headers_that_choose_keys_or_extensions_are_refused(header: dict[str, object]) -> None:
    assert reason(forge_raw(good_claims(), **header)) == "header"


def test_tampered_payload_is_refused() -> None:
    token = forge(good_claims(role="viewer"))
    head, _payload, signature = token.split(".")
    upgraded = b64url(json.dumps(good_claims(role="admin")).encode())
    assert reason(f"{head}.{upgraded}.{signature}") == "signature"


def test_token_signed_with_another_secret_is_refused() -> None:
    assert reason(forge(good_claims(), key=b"t" * 40)) == "signature"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x", "x" * 9000, "..", "eyJhbGciOiJIUzI1NiJ9.."])
def test_garbage_is_a_clean_error(garbage: str) -> None:
    assert reason(garbage) in {"malformed", "algorithm", "typ"}


@given(st.text(max_size=300))
def test_any_text_is_refused_with_a_token_error_never_a_crash(text: str) -> None:
    with pytest.raises(TokenError):
        verify_access_token(KEYRING, text, now=NOW)


def test_unknown_role_is_refused() -> None:
    assert reason(forge(good_claims(role="root"))) == "claims"


def test_access_and_refresh_tokens_cannot_stand_in_for_each_other() -> None:
    access = issue_access_token(KEYRING, ADMIN, now=NOW)
    refresh = issue_refresh_token(KEYRING, ADMIN, now=NOW)
    assert jwt.get_unverified_header(refresh)["typ"] == REFRESH_TYP
    with pytest.raises(TokenError) as as_access:
        verify_access_token(KEYRING, refresh, now=NOW)
    with pytest.raises(TokenError) as as_refresh:
        verify_refresh_token(KEYRING, access, now=NOW)
    assert as_access.value.reason == "typ" and as_refresh.value.reason == "typ"
    # Even with the typ header rewritten (and re-signed by someone holding the key), the audience differs.
    rewritten = forge(jwt.decode(refresh, options={"verify_signature": False}))
    assert reason(rewritten) == "audience"
    assert verify_refresh_token(KEYRING, refresh, now=NOW).claims["aud"] == "sol-stake-api:refresh"


def test_refresh_token_has_no_role_or_permissions() -> None:
    claims = verify_refresh_token(KEYRING, issue_refresh_token(KEYRING, ADMIN, now=NOW), now=NOW).claims
    assert "role" not in claims and "permissions" not in claims
    assert claims["exp"] - claims["iat"] == 30 * 86400


def test_rotated_keys_verify_by_kid_and_sign_with_the_active_one() -> None:
    rotated = Keyring(keys={"k1": SECRET, "k2": b"n" * 40}, active_kid="k2", issuer="sol-stake",
                      audience="sol-stake-api", access_ttl=60, refresh_ttl=60, leeway=0)
    old = forge(good_claims())
    assert verify_access_token(rotated, old, now=NOW).user_id == "7"
    fresh = issue_access_token(rotated, ADMIN, now=NOW)
    assert jwt.get_unverified_header(fresh)["kid"] == "k2"
    assert reason(fresh) == "kid"  # the old keyring does not know k2


def test_short_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring(keys={"k1": b"short"}, active_kid="k1", issuer="i", audience="a", access_ttl=1, refresh_ttl=1,
                leeway=0)


def test_secret_rotation_keeps_old_tokens_valid_until_the_old_secret_is_dropped() -> None:
    old_secret, new_secret = "o" * 40, "n" * 40
    before = Keyring.from_settings(Settings.from_env({"JWT_SECRET": old_secret}))
    token = issue_access_token(before, ADMIN)
    rotated = Keyring.from_settings(Settings.from_env({"JWT_SECRET": new_secret,
                                                       "JWT_PREVIOUS_SECRETS": old_secret}))
    assert verify_access_token(rotated, token).principal().is_admin
    assert jwt.get_unverified_header(issue_access_token(rotated, ADMIN))["kid"] == key_id(new_secret.encode())
    dropped = Keyring.from_settings(Settings.from_env({"JWT_SECRET": new_secret}))
    with pytest.raises(TokenError) as caught:
        verify_access_token(dropped, token)
    assert caught.value.reason == "kid"
    with pytest.raises(SettingsError):
        Settings.from_env({"JWT_SECRET": new_secret, "JWT_PREVIOUS_SECRETS": "short"})
