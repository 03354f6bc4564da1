"""Sign-In With Solana (SIWS): the message text, its strict parser, and verification. Pure, no I/O.

The text is what the wallet signs, so its shape is fixed (the ABNF of the Wallet Standard `solana:signIn`
feature, modelled on EIP-4361):

    {domain} wants you to sign in with your Solana account:
    {address}

    {statement}

    URI: {uri}
    Version: 1
    Chain ID: {chain}
    Nonce: {nonce}
    Issued At: {iso-8601}
    Expiration Time: {iso-8601}
    Not Before: {iso-8601}
    Request ID: {id}
    Resources:
    - {uri}

Optional parts are left out when absent. A sign-in is accepted only if every field of the signed text equals
the challenge the server issued (domain above all: it is what stops a phishing site relaying our challenge),
the times allow it, and the Ed25519 signature over the exact bytes verifies with the address's public key.
Not supported: Ledger's off-chain-message envelope (`\\xffsolana offchain`); such wallets cannot sign in yet.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from solders.pubkey import Pubkey
from solders.signature import Signature

HEADER_SUFFIX = " wants you to sign in with your Solana account:"
CHAIN_IDS = ("mainnet", "testnet", "devnet", "localnet", "solana:mainnet", "solana:testnet", "solana:devnet")
# (attribute, label) in the order the ABNF fixes
_FIELD_LABELS = (
    ("uri", "URI"),
    ("version", "Version"),
    ("chain_id", "Chain ID"),
    ("nonce", "Nonce"),
    ("issued_at", "Issued At"),
    ("expiration_time", "Expiration Time"),
    ("not_before", "Not Before"),
    ("request_id", "Request ID"),
)
_LABELS = (*(label for _attr, label in _FIELD_LABELS), "Resources")
_DOMAIN = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$")
_NONCE = re.compile(r"^[A-Za-z0-9]{8,}$")
_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")
_MAX_MESSAGE = 4096
ISSUED_AT_SKEW = timedelta(minutes=10)


class SiwsError(ValueError):
    """A sign-in message or signature that must be refused; `reason` is a short stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SignInMessage:
    domain: str
    address: str
    statement: str | None = None
    uri: str | None = None
    version: str | None = "1"
    chain_id: str | None = None
    nonce: str | None = None
    issued_at: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The Wallet Standard `SolanaSignInInput` shape (camelCase, absent fields left out)."""
        names = {"chain_id": "chainId", "issued_at": "issuedAt", "expiration_time": "expirationTime",
                 "not_before": "notBefore", "request_id": "requestId"}
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                continue
            out[names.get(f.name, f.name)] = list(value) if f.name == "resources" else value
        return out


def iso8601(moment: datetime) -> str:
    """UTC with milliseconds and `Z`, as JavaScript's toISOString writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_time(value: str, field_name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SiwsError("malformed", f"{field_name} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise SiwsError("malformed", f"{field_name} has no time zone")
    return moment


def _check_line(value: str, what: str) -> None:
    if not value or "\n" in value or "\r" in value or value != value.strip():
        raise SiwsError("malformed", f"{what} must be one non-empty line without surrounding spaces")


def validate(message: SignInMessage) -> None:
    """Refuse values that could not round-trip through the text (or that the ABNF forbids)."""
    if not _DOMAIN.match(message.domain):
        raise SiwsError("malformed", "domain must be host[:port]")
    if not _BASE58.match(message.address):
        raise SiwsError("malformed", "address must be a base58 public key")
    if message.statement is not None:
        _check_line(message.statement, "statement")
        if message.statement.startswith(tuple(label + ":" for label in _LABELS)):
            raise SiwsError("malformed", "statement must not start like a field")
    for attr, label in _FIELD_LABELS:
        value = getattr(message, attr)
        if value is not None:
            _check_line(value, label)
    if message.chain_id is not None and message.chain_id not in CHAIN_IDS:
        raise SiwsError("malformed", f"chain id must be one of {', '.join(CHAIN_IDS)}")
    if message.nonce is not None and not _NONCE.match(message.nonce):
        raise SiwsError("malformed", "nonce must be at least 8 alphanumeric characters")
    if message.version is not None and message.version != "1":
        raise SiwsError("malformed", "version must be 1")
    for attr in ("issued_at", "expiration_time", "not_before"):
        value = getattr(message, attr)
        if value is not None:
            _parse_time(value, attr)
    for resource in message.resources:
        _check_line(resource, "resource")


def format_message(message: SignInMessage) -> str:
    validate(message)
    text = message.domain + HEADER_SUFFIX + "\n" + message.address
    if message.statement is not None:
        text += "\n\n" + message.statement
    lines = [f"{label}: {getattr(message, attr)}" for attr, label in _FIELD_LABELS
             if getattr(message, attr) is not None]
    if message.resources:
        lines.append("Resources:")
        lines.extend(f"- {resource}" for resource in message.resources)
    if lines:
        text += "\n\n" + "\n".join(lines)
    return text


def parse_message(text: str) -> SignInMessage:
    """The fields of a SIWS text; strict: anything the formatter would not write is refused."""
    if not isinstance(text, str) or len(text) > _MAX_MESSAGE:
        raise SiwsError("malformed", "message must be text of at most 4096 characters")
    lines = text.split("\n")
    if len(lines) < 2 or not lines[0].endswith(HEADER_SUFFIX):
        raise SiwsError("malformed", "message does not start with the sign-in header")
    values: dict[str, object] = {"domain": lines[0][: -len(HEADER_SUFFIX)], "address": lines[1], "version": None}
    rest = lines[2:]
    if rest:
        if len(rest) < 2 or rest[0] != "":
            raise SiwsError("malformed", "a blank line must follow the address")
        rest = rest[1:]
        if not rest[0].startswith(tuple(label + ":" for label in _LABELS)):
            values["statement"] = rest[0]
            rest = rest[1:]
            if rest:
                if len(rest) < 2 or rest[0] != "":
                    raise SiwsError("malformed", "a blank line must follow the statement")
                rest = rest[1:]
        values.update(_parse_fields(rest))
    message = SignInMessage(**values)  # type: ignore[arg-type]
    validate(message)
    if format_message(message) != text:
        raise SiwsError("malformed", "message is not in canonical form")
    return message


def _parse_fields(lines: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    position = 0
    for index, line in enumerate(lines):
        if line == "Resources:":
            items = lines[index + 1 :]
            if not items or not all(item.startswith("- ") for item in items):
                raise SiwsError("malformed", "resources must be '- ' lines")
            values["resources"] = tuple(item[2:] for item in items)
            return values
        label, sep, value = line.partition(": ")
        labels = [lbl for _attr, lbl in _FIELD_LABELS]
        if not sep or label not in labels[position:]:
            raise SiwsError("malformed", f"unexpected or out-of-order line {line[:40]!r}")
        position = labels.index(label) + 1
        values[_FIELD_LABELS[position - 1][0]] = value
    return values


def verify_sign_in(challenge: SignInMessage, text: str, signature: bytes, now: datetime) -> SignInMessage:
    """Check a signed text against the challenge we issued; return the signed fields or raise SiwsError."""
    signed = parse_message(text)
    if signed.domain != challenge.domain:
        raise SiwsError("domain", "message is for another domain")
    if signed.address != challenge.address:
        raise SiwsError("address", "message is for another address")
    if not hmac.compare_digest((signed.nonce or "").encode(), (challenge.nonce or "").encode()):
        raise SiwsError("nonce", "message nonce does not match the challenge")
    if signed.chain_id != challenge.chain_id:
        raise SiwsError("chain", "message is for another chain")
    for f in fields(SignInMessage):
        if getattr(signed, f.name) != getattr(challenge, f.name):
            raise SiwsError("mismatch", f"message field {f.name} differs from the challenge")
    _check_times(signed, now)
    if len(signature) != 64:
        raise SiwsError("signature", "signature must be 64 bytes")
    try:
        pubkey = Pubkey.from_string(signed.address)
    except ValueError:
        raise SiwsError("address", "address is not a valid public key") from None
    if not Signature.from_bytes(signature).verify(pubkey, text.encode()):
        raise SiwsError("signature", "signature does not verify for this address")
    return signed


def _check_times(message: SignInMessage, now: datetime) -> None:
    if message.expiration_time is not None and _parse_time(message.expiration_time, "expiration") <= now:
        raise SiwsError("expired", "sign-in message has expired")
    if message.not_before is not None and _parse_time(message.not_before, "not before") > now:
        raise SiwsError("not_yet_valid", "sign-in message is not valid yet")
    if message.issued_at is not None and _parse_time(message.issued_at, "issued at") > now + ISSUED_AT_SKEW:
        raise SiwsError("issued_in_future", "sign-in message is issued in the future")
