"""Sign-In With Solana message format, strict parser and verification (pure; real Ed25519 keys)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solders.keypair import Keypair

from http_app.siws import (
    CHAIN_IDS,
    SignInMessage,
    SiwsError,
    format_message,
    iso8601,
    parse_message,
    verify_sign_in,
)

NOW = datetime(2026, 11, 22, 3, 0, 0, 123000, tzinfo=UTC)
WALLET = Keypair.from_seed(bytes(range(32)))
OTHER = Keypair.from_seed(bytes(range(1, 33)))


def challenge(**changes: object) -> SignInMessage:
    base = SignInMessage(
        domain="app.sol-stake.example",
        address=str(WALLET.pubkey()),
        statement="Sign in to sol-stake.",
        uri="https://app.sol-stake.example",
        chain_id="mainnet",
        nonce="0123456789abcdef0123456789abcdef",
        issued_at=iso8601(NOW),
        expiration_time=iso8601(NOW + timedelta(minutes=5)),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def signed(message: SignInMessage, keypair: Keypair = WALLET) -> tuple[str, bytes]:
    text = format_message(message)
    return text, bytes(keypair.sign_message(text.encode()))


def refusal(expected: SignInMessage, text: str, signature: bytes, now: datetime = NOW) -> str:
    with pytest.raises(SiwsError) as caught:
        verify_sign_in(expected, text, signature, now)
    return caught.value.reason


def test_message_text_is_the_wallet_standard_layout() -> None:
    text = format_message(challenge(resources=("https://a.example/terms",), request_id="r-1"))
    assert text == (
        "app.sol-stake.example wants you to sign in with your Solana account:\n"
        f"{WALLET.pubkey()}\n"
        "\n"
        "Sign in to sol-stake.\n"
        "\n"
        "URI: https://app.sol-stake.example\n"
        "Version: 1\n"
        "Chain ID: mainnet\n"
        "Nonce: 0123456789abcdef0123456789abcdef\n"
        "Issued At: 2026-11-22T03:00:00.123Z\n"
        "Expiration Time: 2026-11-22T03:05:00.123Z\n"
        "Request ID: r-1\n"
        "Resources:\n"
        "- https://a.example/terms"
    )


def test_minimal_message_is_header_and_address_only() -> None:
    message = SignInMessage(domain="localhost:3007", address=str(WALLET.pubkey()), version=None)
    header = "localhost:3007 wants you to sign in with your Solana account:"
    assert format_message(message) == f"{header}\n{WALLET.pubkey()}"
    assert parse_message(format_message(message)) == message


line = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=40)
clean_line = line.map(str.strip).filter(lambda s: s != "" and not s.startswith(("URI:", "Version:", "Chain ID:",
                                                                                  "Nonce:", "Issued At:",
                                                                                  "Expiration Time:",
                                                                                  "Not Before:", "Request ID:",
                                                                                  "Resources:")))
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC)).map(iso8601)
messages = st.builds(
    SignInMessage,
    domain=st.from_regex(r"\A[a-z0-9][a-z0-9.\-]{0,30}(:[0-9]{1,5})?\Z"),
    address=st.binary(min_size=32, max_size=32).map(lambda b: str(Keypair.from_seed(b).pubkey())),
    statement=st.none() | clean_line,
    uri=st.none() | clean_line,
    version=st.sampled_from([None, "1"]),
    chain_id=st.none() | st.sampled_from(CHAIN_IDS),
    nonce=st.none() | st.from_regex(r"\A[A-Za-z0-9]{8,40}\Z"),
    issued_at=st.none() | times,
    expiration_time=st.none() | times,
    not_before=st.none() | times,
    request_id=st.none() | clean_line,
    resources=st.lists(clean_line, max_size=3).map(tuple),
)


@given(messages)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_parse_is_the_inverse_of_format(message: SignInMessage) -> None:
    assert parse_message(format_message(message)) == message


@given(messages, st.data())
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60)
def test_any_single_character_change_is_refused(message: SignInMessage, data: st.DataObject) -> None:
    message = dataclasses.replace(message, address=str(WALLET.pubkey()), expiration_time=None, not_before=None,
                                  issued_at=None)
    text, signature = signed(message)
    index = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.characters(codec="utf-8", exclude_categories=("Cs",)).filter(lambda c: c != text[index]))
    tampered = text[:index] + replacement + text[index + 1 :]
    with pytest.raises(SiwsError):
        verify_sign_in(message, tampered, signature, NOW)


@given(st.text(max_size=400))
def test_any_text_is_refused_or_parsed_never_a_crash(text: str) -> None:
    try:
        parsed = parse_message(text)
    except SiwsError:
        return
    assert format_message(parsed) == text


def test_genuine_sign_in_is_accepted() -> None:
    expected = challenge()
    text, signature = signed(expected)
    assert verify_sign_in(expected, text, signature, NOW + timedelta(seconds=10)) == expected


def test_wrong_domain_is_refused() -> None:
    text, signature = signed(challenge(domain="sol-stake.evil.example"))
    assert refusal(challenge(), text, signature) == "domain"


def test_tampered_message_is_refused() -> None:
    text, signature = signed(challenge())
    tampered = text.replace("Sign in to sol-stake.", "Sign in to sol-stake!")
    assert refusal(challenge(), tampered, signature) == "mismatch"
    # Tampered in a way that still matches the challenge: only the signature can tell.
    other_text, _ = signed(challenge(statement="Something else"))
    assert refusal(challenge(statement="Something else"), other_text, signature) == "signature"


def test_signature_by_another_key_is_refused() -> None:
    text, signature = signed(challenge(), keypair=OTHER)
    assert refusal(challenge(), text, signature) == "signature"


def test_message_for_another_address_is_refused() -> None:
    text, signature = signed(challenge(address=str(OTHER.pubkey())), keypair=OTHER)
    assert refusal(challenge(), text, signature) == "address"


def test_other_nonce_is_refused() -> None:
    text, signature = signed(challenge(nonce="ffffffffffffffff"))
    assert refusal(challenge(), text, signature) == "nonce"


def test_wrong_chain_is_refused() -> None:
    text, signature = signed(challenge(chain_id="devnet"))
    assert refusal(challenge(), text, signature) == "chain"


def test_expired_message_is_refused() -> None:
    text, signature = signed(challenge())
    assert refusal(challenge(), text, signature, now=NOW + timedelta(minutes=5, seconds=1)) == "expired"


def test_not_before_in_the_future_is_refused() -> None:
    message = challenge(not_before=iso8601(NOW + timedelta(minutes=1)))
    text, signature = signed(message)
    assert refusal(message, text, signature) == "not_yet_valid"


def test_issued_far_in_the_future_is_refused() -> None:
    message = challenge(issued_at=iso8601(NOW + timedelta(hours=1)), expiration_time=None)
    text, signature = signed(message)
    assert refusal(message, text, signature) == "issued_in_future"


@pytest.mark.parametrize("bad", [b"", b"\x00" * 63, b"\x00" * 65])
def test_signature_of_wrong_length_is_refused(bad: bytes) -> None:
    text, _ = signed(challenge())
    assert refusal(challenge(), text, bad) == "signature"


@pytest.mark.parametrize("text", [
    "",
    "hello",
    "evil.example wants you to sign in with your Ethereum account:\n0xabc",
    "a.example wants you to sign in with your Solana account:\nnot-base58!",
    "a.example wants you to sign in with your Solana account:\n" + "1" * 32 + "\n\nNonce: short",
    "a.example wants you to sign in with your Solana account:\n" + "1" * 32 + "\n\nNonce: abcdefgh\nURI: x",
    "a.example wants you to sign in with your Solana account:\n" + "1" * 32 + "\nNonce: abcdefgh",
    "a.example wants you to sign in with your Solana account:\n" + "1" * 32 + "\n\nVersion: 2",
    "a.example wants you to sign in with your Solana account:\r\n" + "1" * 32,
    "a b wants you to sign in with your Solana account:\n" + "1" * 32,
])
def test_malformed_text_is_refused(text: str) -> None:
    with pytest.raises(SiwsError) as caught:
        parse_message(text)
    assert caught.value.reason == "malformed"


def test_statement_cannot_pretend_to_be_a_field() -> None:
    with pytest.raises(SiwsError):
        format_message(challenge(statement="Nonce: 12345678"))
    with pytest.raises(SiwsError):
        format_message(challenge(statement="two\nlines"))


def test_json_input_uses_wallet_standard_names() -> None:
    as_json = challenge().to_json()
    assert as_json["chainId"] == "mainnet" and as_json["issuedAt"] == "2026-11-22T03:00:00.123Z"
    assert "notBefore" not in as_json and "resources" not in as_json
