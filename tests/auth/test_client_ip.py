"""Client address for rate limiting: the peer, or X-Forwarded-For read from the right past trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from http_app.client_ip import client_ip

ips = st.ip_addresses().map(str)
spoof = st.lists(st.one_of(ips, st.text(max_size=20)), max_size=5)


@given(peer=ips, headers=st.lists(st.text(max_size=60), max_size=3))
def test_without_trusted_proxies_the_header_is_never_read(peer: str, headers: list[str]) -> None:
    assert client_ip(peer, headers, 0) == str(ipaddress.ip_address(peer))


@given(client=ips, spoofed=spoof, proxies=st.lists(ips, min_size=1, max_size=4))
def test_spoofed_entries_left_of_the_trusted_chain_change_nothing(
    client: str, spoofed: list[str], proxies: list[str]
) -> None:
    # The client sends any X-Forwarded-For it likes; each trusted proxy appends the address it saw.
    # proxies[0] is the outermost (saw the client), proxies[-1] connects to us (the peer).
    seen = [client, *proxies[:-1]]
    header = ", ".join([*spoofed, *seen]) if spoofed else ", ".join(seen)
    assert client_ip(proxies[-1], [header], len(proxies)) == str(ipaddress.ip_address(client))


def test_heroku_router_one_hop() -> None:
    assert client_ip("10.1.2.3", ["1.2.3.4, 203.0.113.9"], 1) == "203.0.113.9"


def test_repeated_headers_are_one_list() -> None:
    assert client_ip("10.0.0.1", ["1.1.1.1", "198.51.100.2, 10.0.0.9"], 2) == "198.51.100.2"


def test_short_chain_means_the_request_bypassed_the_proxies() -> None:
    assert client_ip("192.0.2.50", ["1.2.3.4"], 2) == "192.0.2.50"
    assert client_ip("192.0.2.50", [], 1) == "192.0.2.50"


@pytest.mark.parametrize("entry", ["not-an-ip", "", "1.2.3.4.5", "<script>"])
def test_garbage_entry_falls_back_to_the_peer(entry: str) -> None:
    assert client_ip("192.0.2.50", [f"{entry}"], 1) == "192.0.2.50"


@pytest.mark.parametrize(("entry", "expected"), [
    ("203.0.113.7:443", "203.0.113.7"), ("[2001:db8::1]:443", "2001:db8::1"), ("2001:DB8::1", "2001:db8::1"),
])
def test_ports_and_ipv6_forms_are_normalised(entry: str, expected: str) -> None:
    assert client_ip("10.0.0.1", [entry], 1) == expected


def test_no_peer_is_unknown() -> None:
    assert client_ip(None, ["1.2.3.4"], 0) == "unknown"
