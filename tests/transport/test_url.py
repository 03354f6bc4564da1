"""Broker URL options: parsed, validated, and stripped before redis-py sees the URL."""

from __future__ import annotations

import faust
import pytest
from faust.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from stream_app.transport.url import TransportOptions, TransportURLError, parse_broker_url


def test_defaults_and_plain_url() -> None:
    plain, options = parse_broker_url("redis://h:6379/2")
    assert plain == "redis://h:6379/2"
    assert options == TransportOptions()


def test_options_are_parsed_and_removed_from_the_redis_url() -> None:
    plain, options = parse_broker_url("redis://h:6380/1?prefix=abc&fetch_count=10&fence_changelogs=no&maxlen=5")
    assert plain == "redis://h:6380/1"
    assert (options.prefix, options.fetch_count, options.fence_changelogs, options.maxlen) == ("abc", 10, False, 5)
    assert options.lean_recovery
    assert not parse_broker_url("redis://h/0?lean_recovery=false")[1].lean_recovery
    assert options.lean_delivery and not parse_broker_url("redis://h/0?lean_delivery=0")[1].lean_delivery


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("colour=blue", "unknown option 'colour'"),
        ("fetch_count=0", "fetch_count='0'"),
        ("prefix=a{b}", "prefix="),
        ("block_ms=40000", "must exceed block_ms"),
    ],
)
def test_bad_options_fail_with_a_clear_message(query: str, message: str) -> None:
    with pytest.raises(TransportURLError, match="bad Redis broker URL") as info:
        parse_broker_url(f"redis://h/0?{query}")
    assert message in str(info.value)


@given(st.integers(min_value=1, max_value=10**6), st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True))
def test_any_valid_value_round_trips(count: int, prefix: str) -> None:
    _, options = parse_broker_url(f"redis://h/0?fetch_count={count}&prefix={prefix}")
    assert (options.fetch_count, options.prefix) == (count, prefix)


def test_unsupported_settings_fail_at_start() -> None:
    app = faust.App("x", broker="redis://h/0", processing_guarantee="exactly_once")
    with pytest.raises(ImproperlyConfigured, match="at_least_once"):
        _ = app.transport
    app = faust.App("y", broker="redis://h/0", producer_threaded=True)
    with pytest.raises(ImproperlyConfigured, match="producer_threaded"):
        _ = app.transport
    app = faust.App("z", broker="redis://h/0?nope=1")
    with pytest.raises(ImproperlyConfigured, match="unknown option"):
        _ = app.transport
