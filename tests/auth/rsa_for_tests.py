"""A genuine RS256 signer in pure Python, only to forge 'RSA-signed' tokens for the HS/RS confusion tests.

(`cryptography` cannot be installed next to Tartiflette's `cffi<2` pin; textbook RSA + PKCS#1 v1.5 padding
is enough to produce real RS256 signatures for negative tests. Never use this for anything else.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets

_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _probably_prime(n: int, rounds: int = 32) -> bool:
    if n < 4:
        return n in (2, 3)
    if n % 2 == 0:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | 1
        if _probably_prime(candidate):
            return candidate


class RsaKey:
    def __init__(self, bits: int = 1024) -> None:
        self.e = 65537
        while True:
            p, q = _prime(bits // 2), _prime(bits // 2)
            phi = (p - 1) * (q - 1)
            if p != q and phi % self.e:
                break
        self.n = p * q
        self.d = pow(self.e, -1, phi)
        self.size = (self.n.bit_length() + 7) // 8

    def _padded(self, message: bytes) -> int:
        digest = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        return int.from_bytes(b"\x00\x01" + b"\xff" * (self.size - len(digest) - 3) + b"\x00" + digest, "big")

    def sign(self, message: bytes) -> bytes:
        return pow(self._padded(message), self.d, self.n).to_bytes(self.size, "big")

    def verify(self, message: bytes, signature: bytes) -> bool:
        return pow(int.from_bytes(signature, "big"), self.e, self.n) == self._padded(message)

    def public_pem_like(self) -> bytes:
        """Bytes an attacker would know (the public key), to use as an HMAC secret."""
        return f"-----BEGIN PUBLIC KEY-----\n{self.n:x}:{self.e:x}\n-----END PUBLIC KEY-----\n".encode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, object], claims: dict[str, object], sign: object) -> str:
    signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    signature = sign(signing_input)  # type: ignore[operator]
    return signing_input.decode() + "." + b64url(signature)
