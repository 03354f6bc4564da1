"""Which address a request comes from, for rate limiting. Pure logic, no I/O.

Only the TCP peer cannot be forged. With `trusted_hops = N` proxies in front of us, each appends the address
it received the request from to X-Forwarded-For, so the client is the N-th entry counted from the right;
everything further left was written by the client and is ignored. With N = 0 the header is never read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

UNKNOWN = "unknown"


@lru_cache(maxsize=8192)  # the same few peers ask again and again; parsing an address is not free
def _normalise(value: str) -> str | None:
    text = value.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:443"
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_ip(peer: str | None, forwarded_for: Iterable[str], trusted_hops: int) -> str:
    """The client's address: the peer, or the entry `trusted_hops` from the right of X-Forwarded-For.

    `forwarded_for` is every X-Forwarded-For header value in order (repeated headers are one list).
    If the chain is shorter than the number of trusted proxies, or the chosen entry is not an IP address,
    the request did not come through our proxies as configured, so the peer is used.
    """
    peer_ip = (_normalise(peer) if peer else None) or (peer or UNKNOWN)
    if trusted_hops <= 0:
        return peer_ip
    chain = [item for value in forwarded_for for item in value.split(",") if item.strip()]
    if len(chain) < trusted_hops:
        return peer_ip
    return _normalise(chain[-trusted_hops]) or peer_ip
