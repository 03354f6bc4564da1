"""Sliding-window limiter on real Redis: exact counts, headers, concurrency, piggybacked reads, Redis down."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from http_app.ratelimit import Policy, SlidingWindowLimiter, count_request, too_many_requests
from stream_app.embedded import EmbeddedRedis

DEFAULT = Policy("anonymous", 100, 900)


async def test_the_101st_request_in_the_window_is_refused(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    limiter = SlidingWindowLimiter(redis_client, redis_prefix)
    verdicts = [await limiter.hit(DEFAULT, "198.51.100.1|-") for _ in range(101)]
    assert all(v.allowed for v in verdicts[:100])
    assert [v.remaining for v in verdicts[:100]] == list(range(99, -1, -1))
    refused = verdicts[100]
    assert not refused.allowed and refused.remaining == 0
    # Nothing has left the window yet: the first request leaves it ~900 s after it was admitted.
    assert 890 < refused.reset_seconds <= 900 and 890 < refused.retry_after <= 900
    headers = refused.headers()
    assert headers["X-RateLimit-Limit"] == "100" and headers["X-RateLimit-Remaining"] == "0"
    reset_ms = int(headers["X-RateLimit-Reset"])
    assert abs(reset_ms / 1000 - (refused.redis_now + refused.reset_seconds)) < 0.01
    assert headers["RateLimit-Policy"] == '"anonymous";q=100;w=900'
    assert headers["RateLimit"] == f'"anonymous";r=0;t={refused.retry_after}'


async def test_refused_requests_are_not_recorded(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    limiter = SlidingWindowLimiter(redis_client, redis_prefix)
    policy = Policy("anonymous", 5, 900)
    for _ in range(50):
        await limiter.hit(policy, "c")
    key = limiter.key(policy, "c")
    assert key.startswith(f"{redis_prefix}:rl:anonymous:")
    assert await redis_client.zcard(key) == 5
    assert 0 < await redis_client.pttl(key) <= 900_000


async def test_clients_and_policies_have_separate_windows(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    limiter = SlidingWindowLimiter(redis_client, redis_prefix)
    tight = Policy("anonymous", 1, 900)
    assert (await limiter.hit(tight, "a")).allowed
    assert not (await limiter.hit(tight, "a")).allowed
    assert (await limiter.hit(tight, "b")).allowed
    assert (await limiter.hit(Policy("signin", 1, 900), "a")).allowed


async def test_window_slides_instead_of_resetting(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    limiter = SlidingWindowLimiter(redis_client, redis_prefix)
    policy = Policy("anonymous", 2, 1.5)
    assert (await limiter.hit(policy, "s")).allowed  # A
    await asyncio.sleep(0.7)
    assert (await limiter.hit(policy, "s")).allowed  # B, later than A
    refused = await limiter.hit(policy, "s")
    assert not refused.allowed
    # When A leaves the window exactly one slot frees; B still counts.
    await asyncio.sleep(refused.reset_seconds + 0.05)
    again = [await limiter.hit(policy, "s") for _ in range(2)]
    assert [v.allowed for v in again] == [True, False]


async def test_no_over_admission_under_concurrent_clients(redis_url: str, redis_prefix: str) -> None:
    clients = [aioredis.from_url(redis_url) for _ in range(4)]
    try:
        limiters = [SlidingWindowLimiter(c, redis_prefix) for c in clients]
        policy = Policy("anonymous", 100, 900)
        verdicts = await asyncio.gather(*(limiters[i % 4].hit(policy, "burst") for i in range(400)))
        admitted = sum(v.allowed for v in verdicts)
        assert admitted == 100
        assert sorted(v.used for v in verdicts if v.allowed) == list(range(1, 101))
        assert await clients[0].zcard(limiters[0].key(policy, "burst")) == 100
    finally:
        for c in clients:
            await c.delete(SlidingWindowLimiter(c, redis_prefix).key(Policy("anonymous", 1, 1), "burst"))
            await c.aclose()


@pytest.mark.parametrize("in_script", [False, True])
async def test_same_round_trip_answers_revocation_and_cache(
    redis_client: aioredis.Redis, redis_prefix: str, in_script: bool
) -> None:
    limiter = SlidingWindowLimiter(redis_client, redis_prefix)
    cache_key, revoked_key = f"{redis_prefix}:cache:q1", f"{redis_prefix}:auth:revoked:j1"
    await redis_client.set(cache_key, b"{\"data\":1}")
    hit = await limiter.hit(DEFAULT, "r", revocation_key=f"{redis_prefix}:auth:revoked:j0", cache_key=cache_key,
                            cache_in_script=in_script)
    assert hit.allowed and hit.revoked is False and hit.cached == b"{\"data\":1}"
    miss = await limiter.hit(DEFAULT, "r", cache_key=f"{redis_prefix}:cache:absent", cache_in_script=in_script)
    assert miss.cached is None and miss.revoked is None
    await redis_client.set(revoked_key, b"1")
    revoked = await limiter.hit(DEFAULT, "r", revocation_key=revoked_key, cache_key=cache_key,
                                cache_in_script=in_script)
    assert revoked.revoked is True and revoked.cached is None  # nothing served to a revoked token
    tight = Policy("anonymous", 1, 900)
    assert (await limiter.hit(tight, "t", cache_key=cache_key, cache_in_script=in_script)).cached is not None
    refused = await limiter.hit(tight, "t", cache_key=cache_key, cache_in_script=in_script)
    assert not refused.allowed and refused.cached is None


async def test_script_survives_a_script_cache_flush(redis_url: str, redis_prefix: str) -> None:
    # SCRIPT FLUSH only empties the Lua cache (no data), like a Redis restart would.
    client = aioredis.from_url(redis_url)
    try:
        limiter = SlidingWindowLimiter(client, redis_prefix)
        assert (await limiter.hit(DEFAULT, "f")).allowed
        await client.script_flush()
        assert (await limiter.hit(DEFAULT, "f")).used == 2
        await client.script_flush()
        assert (await limiter.hit(DEFAULT, "f", cache_key=f"{redis_prefix}:cache:none")).used == 3
    finally:
        await client.delete(limiter.key(DEFAULT, "f"))
        await client.aclose()


async def test_redis_down_fails_open_for_reads_and_closed_for_sign_in(own_redis: EmbeddedRedis) -> None:
    client = aioredis.from_url(own_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        limiter = SlidingWindowLimiter(client, "down")
        assert (await count_request(limiter, DEFAULT, "x")) is not None
        own_redis.stop()
        assert await count_request(limiter, DEFAULT, "x") is None
        assert await count_request(limiter, Policy("signin", 10, 900), "x") is None
        with pytest.raises((RedisError, OSError)):
            await limiter.hit(DEFAULT, "x")
    finally:
        await client.aclose()


async def test_graphql_callers_also_get_a_coded_error(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    limiter = SlidingWindowLimiter(redis_client, redis_prefix)
    tight = Policy("anonymous", 1, 900)
    await limiter.hit(tight, "g")
    refused = await limiter.hit(tight, "g")
    plain = orjson.loads(too_many_requests(refused).body)  # type: ignore[arg-type]
    graphql = orjson.loads(too_many_requests(refused, graphql=True).body)  # type: ignore[arg-type]
    assert set(plain) == {"error", "message", "retryAfter"}
    assert graphql["errors"][0]["extensions"] == {"code": "RATE_LIMITED", "retryAfter": refused.retry_after}
