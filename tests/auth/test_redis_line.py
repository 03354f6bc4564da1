"""RedisLine, the limiter's lean connection: ordering, errors, timeouts, reconnects (real Redis servers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from http_app.ratelimit import Policy, SlidingWindowLimiter
from http_app.redis_line import RedisLine, supports
from stream_app.embedded import EmbeddedRedis


def test_only_plain_redis_urls() -> None:
    assert supports("redis://127.0.0.1:6379/0")
    assert not supports("rediss://host:6380/0") and not supports("unix:///tmp/r.sock") and not supports(None)
    with pytest.raises(ValueError):
        RedisLine("rediss://host/0")


async def test_concurrent_callers_get_their_own_replies(redis_url: str) -> None:
    line = RedisLine(redis_url)
    try:
        replies = await asyncio.gather(*(line.call("ECHO", f"r{i}") for i in range(2000)))
        assert replies == [f"r{i}".encode() for i in range(2000)]
    finally:
        await line.close()


async def test_error_replies_raise_and_the_line_keeps_working(redis_url: str, redis_prefix: str) -> None:
    line = RedisLine(redis_url)
    try:
        with pytest.raises(NoScriptError):
            await line.call("EVALSHA", "0" * 40, 0)
        with pytest.raises(ResponseError):
            await line.call("INCR", "no", "such", "arity")
        key = f"{redis_prefix}:line"
        await line.call("SET", key, "v")
        assert await line.call("GET", key) == b"v"
        await line.call("DEL", key)
    finally:
        await line.close()


async def test_database_from_the_url_is_selected(redis_url: str, redis_prefix: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    line = RedisLine(f"{base}/3")
    other = aioredis.from_url(f"{base}/3")
    key = f"{redis_prefix}:db3"
    try:
        await line.call("SET", key, "three")
        assert await other.get(key) == b"three"
    finally:
        await other.delete(key)
        await other.aclose()
        await line.close()


async def test_timeout_drops_the_connection_so_no_late_reply_is_misrouted(own_redis: EmbeddedRedis) -> None:
    line = RedisLine(own_redis.url, timeout=0.3)
    try:
        with pytest.raises(TimeoutError):
            await line.call("DEBUG", "SLEEP", "0.6")
        await asyncio.sleep(0.5)  # Redis is single-threaded: let the sleep finish before asking again
        assert await line.call("ECHO", "after") == b"after"
    finally:
        await line.close()


async def test_dead_server_fails_fast_and_a_restart_heals(own_redis: EmbeddedRedis) -> None:
    line = RedisLine(own_redis.url, timeout=0.5)
    try:
        assert await line.call("PING") == b"PONG"
        own_redis.stop()
        with pytest.raises(RedisConnectionError):
            await line.call("PING")
        own_redis.start()
        assert await line.call("PING") == b"PONG"
    finally:
        await line.close()


async def test_limiter_on_the_line_admits_exactly_the_limit(redis_url: str, redis_prefix: str,
                                                            redis_client: aioredis.Redis) -> None:
    line = RedisLine(redis_url)
    try:
        limiter = SlidingWindowLimiter(redis_client, redis_prefix, line)
        policy = Policy("anonymous", 100, 900)
        verdicts = await asyncio.gather(*(limiter.hit(policy, "line") for _ in range(300)))
        assert sum(v.allowed for v in verdicts) == 100
        refused = [v for v in verdicts if not v.allowed]
        assert all(v.remaining == 0 and 890 < v.reset_seconds <= 900 for v in refused)
        cache_key = f"{redis_prefix}:cache:x"
        await redis_client.set(cache_key, b"cached")
        other = Policy("anonymous", 5, 900)
        assert (await limiter.hit(other, "c", cache_key=cache_key)).cached == b"cached"
        assert (await limiter.hit(other, "c", cache_key=cache_key, cache_in_script=True)).cached == b"cached"
        await redis_client.script_flush()  # NOSCRIPT on the line: loaded again, both replies consumed in order
        after = await limiter.hit(other, "c", cache_key=cache_key)
        assert after.used == 3 and after.cached == b"cached"
    finally:
        await line.close()


def test_works_under_uvloop_too(redis_url: str) -> None:
    # The web process runs on uvloop, whose transports are not asyncio.Transport subclasses.
    import uvloop

    async def exercise() -> list[bytes]:
        line = RedisLine(redis_url)
        try:
            return list(await asyncio.gather(*(line.call("ECHO", f"u{i}") for i in range(200))))
        finally:
            await line.close()

    assert uvloop.run(exercise()) == [f"u{i}".encode() for i in range(200)]


async def test_one_clients_simultaneous_hits_share_one_script_run_and_stay_exact(own_redis: EmbeddedRedis) -> None:
    client = aioredis.from_url(own_redis.url)
    line = RedisLine(own_redis.url)
    try:
        limiter = SlidingWindowLimiter(client, "share", line)
        policy = Policy("anonymous", 40, 900)
        await limiter.hit(policy, "warm")  # connect and load the script outside the measured burst
        before = (await client.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
        verdicts = await asyncio.gather(*(limiter.hit(policy, "busy") for _ in range(100)))
        after = (await client.info("commandstats"))["cmdstat_evalsha"]["calls"]
        assert after - before == 1  # one loop iteration, one client: one EVALSHA for all 100
        # Exactly what 100 back-to-back calls answer: the first 40 admitted in order, the rest refused.
        assert [v.allowed for v in verdicts] == [True] * 40 + [False] * 60
        assert [v.used for v in verdicts[:40]] == list(range(1, 41))
        assert [v.remaining for v in verdicts[:40]] == list(range(39, -1, -1))
        assert all(v.remaining == 0 and 890 < v.reset_seconds <= 900 for v in verdicts[40:])
        assert await client.zcard(limiter.key(policy, "busy")) == 40
        # Two clients (or one client with and without a token) in one iteration: one script run each.
        mixed = await asyncio.gather(limiter.hit(policy, "a"), limiter.hit(policy, "b"), limiter.hit(policy, "a"),
                                     limiter.hit(policy, "a", revocation_key="share:revoked:j1"))
        assert [(v.used, v.revoked) for v in mixed] == [(1, None), (1, None), (2, None), (3, False)]
    finally:
        await line.close()
        await client.aclose()


async def test_a_cancelled_request_does_not_fail_the_others_in_its_batch(own_redis: EmbeddedRedis) -> None:
    client = aioredis.from_url(own_redis.url)
    line = RedisLine(own_redis.url)
    try:
        limiter = SlidingWindowLimiter(client, "cancel", line)
        policy = Policy("anonymous", 10, 900)
        await limiter.hit(policy, "warm")
        tasks = [asyncio.ensure_future(limiter.hit(policy, "c")) for _ in range(3)]
        await asyncio.sleep(0)  # all three joined one batch
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[1], asyncio.CancelledError)
        assert isinstance(done[0].used, int) and done[0].allowed and done[2].allowed  # type: ignore[union-attr]
        # The cancelled request's slot was taken in Redis (it was asked for), never over the limit.
        assert await client.zcard(limiter.key(policy, "c")) == 3
    finally:
        await line.close()
        await client.aclose()


async def test_a_batch_fails_as_a_whole_when_redis_does_not_answer(own_redis: EmbeddedRedis) -> None:
    client = aioredis.from_url(own_redis.url)
    line = RedisLine(own_redis.url, timeout=0.3)
    try:
        limiter = SlidingWindowLimiter(client, "slow", line)
        policy = Policy("anonymous", 10, 900)
        await limiter.hit(policy, "warm")
        sleeper = aioredis.from_url(own_redis.url)
        blocked = asyncio.ensure_future(sleeper.execute_command("DEBUG", "SLEEP", "0.6"))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(*(limiter.hit(policy, "s") for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results)
        await blocked
        await sleeper.aclose()
        assert (await limiter.hit(policy, "s")).allowed  # reconnected
    finally:
        await line.close()
        await client.aclose()


async def _evalsha_calls(client: aioredis.Redis) -> int:
    return int((await client.info("commandstats"))["cmdstat_evalsha"]["calls"])


async def _until_zcard(client: aioredis.Redis, key: str, size: int) -> None:
    """Wait (at most ~1 s) for a background reservation to land; the caller asserts the size."""
    for _ in range(100):
        if await client.zcard(key) == size:
            return
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _busy_limiter(redis: EmbeddedRedis, prefix: str) -> AsyncIterator[
        tuple[aioredis.Redis, SlidingWindowLimiter, Policy, str]]:
    """A limiter on its own line with a roomy anonymous policy, warmed up; yields (client, limiter, policy,
    the window key of client "busy")."""
    client = aioredis.from_url(redis.url)
    line = RedisLine(redis.url)
    try:
        limiter = SlidingWindowLimiter(client, prefix, line)
        policy = Policy("anonymous", 10_000, 900)
        await limiter.hit(policy, "warm")
        yield client, limiter, policy, limiter.key(policy, "busy")
    finally:
        await line.close()
        await client.aclose()


async def test_a_busy_anonymous_client_gets_reserved_slots_without_over_admission(own_redis: EmbeddedRedis) -> None:
    from http_app.ratelimit import RESERVE_SECONDS

    async with _busy_limiter(own_redis, "reserve") as (client, limiter, policy, key):
        first = await asyncio.gather(*(limiter.hit(policy, "busy") for _ in range(8)))  # one script run
        assert [v.used for v in first] == list(range(1, 9))
        assert await client.zcard(key) == 16  # 8 admitted + 8 reserved, recorded before any is handed out
        calls = await _evalsha_calls(client)
        local = [await limiter.hit(policy, "busy") for _ in range(8)]  # never leaves this loop iteration
        assert [v.used for v in local] == list(range(9, 17)) and all(v.allowed for v in local)
        assert [v.remaining for v in local] == list(range(9_991, 9_983, -1))
        assert all(v.reset_seconds <= 900 + RESERVE_SECONDS for v in local)
        # Half used or more: the next reservation was asked for ahead of need, by one script run that admits
        # nothing (16 = twice what the client took from the last one), recorded before any is handed out.
        await _until_zcard(client, key, 16 + 16)
        assert await _evalsha_calls(client) == calls + 1
        assert await client.zcard(key) == 16 + 16
        # Reserved slots are dated ahead: none can leave the window before a request admitted on it would.
        scores = [score for _, score in await client.zrange(key, 0, -1, withscores=True)]
        assert max(scores) - min(scores) >= RESERVE_SECONDS * 1_000_000 * 0.9
        # The next requests are served from it without a round trip; unused slots are given back when it ends.
        calls = await _evalsha_calls(client)
        burst = await asyncio.gather(*(limiter.hit(policy, "busy") for _ in range(3)))
        assert [v.used for v in burst] == [17, 18, 19] and await _evalsha_calls(client) == calls
        await asyncio.sleep(RESERVE_SECONDS + 0.1)
        assert await client.zcard(key) == 16 + 3
        assert (await limiter.hit(policy, "busy")).used == 20  # after expiry: Redis again, exact count
        # A tight limit never reserves (at most 1/RESERVE_SHARE of the room left): exactly the limit admitted.
        tight = Policy("anonymous", 30, 900)
        verdicts = await asyncio.gather(*(limiter.hit(tight, "t") for _ in range(10)))
        assert await client.zcard(limiter.key(tight, "t")) == 10
        more = [await limiter.hit(tight, "t") for _ in range(25)]
        assert sum(v.allowed for v in verdicts + more) == 30


async def test_a_reservation_refilled_ahead_is_handed_out_after_the_current_one(own_redis: EmbeddedRedis) -> None:
    from http_app.ratelimit import RESERVE_SECONDS

    async with _busy_limiter(own_redis, "ahead") as (client, limiter, policy, key):
        await asyncio.gather(*(limiter.hit(policy, "busy") for _ in range(8)))  # 8 admitted, 8 reserved
        calls = await _evalsha_calls(client)
        half = [await limiter.hit(policy, "busy") for _ in range(4)]  # half used: the next one is asked for
        await _until_zcard(client, key, 16 + 16)
        assert await client.zcard(key) == 16 + 16 and await _evalsha_calls(client) == calls + 1
        rest = [await limiter.hit(policy, "busy") for _ in range(9)]  # 4 left of the current one, then the next
        assert await _evalsha_calls(client) == calls + 1  # no request waited for Redis
        assert [v.used for v in half + rest] == list(range(9, 22)) and all(v.allowed for v in rest)
        await asyncio.sleep(RESERVE_SECONDS + 0.1)
        assert await client.zcard(key) == 21  # the next one's unused slots were given back when it ended
        assert (await limiter.hit(policy, "busy")).used == 22
