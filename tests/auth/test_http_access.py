"""The middlewares over HTTP: principal, 401s, 429s with headers, tiers, XFF spoofing, headers, CORS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from http_app.auth import authenticate
from http_app.principal import ROLE_PERMISSIONS
from http_app.ratelimit import rate_limit
from stream_app.embedded import EmbeddedRedis
from tests.auth.conftest import AppFactory

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit")


async def test_no_token_is_anonymous_with_rate_headers(make_client: AppFactory) -> None:
    client = await make_client()
    response = await client.get("/whoami")
    assert response.status == 200
    assert await response.json() == {"userId": None, "role": None, "permissions": [], "wallet": None}
    assert response.headers["X-RateLimit-Limit"] == "100" and response.headers["X-RateLimit-Remaining"] == "99"
    assert response.headers["RateLimit-Policy"] == '"anonymous";q=100;w=900'


async def test_each_role_gets_the_seed_permissions(make_client: AppFactory, token_for: Callable[..., str]) -> None:
    client = await make_client()
    for role in ("viewer", "user", "admin"):
        response = await client.get("/whoami", headers={"Authorization": f"Bearer {token_for(role)}"})
        body = await response.json()
        assert body["role"] == role and body["permissions"] == sorted(ROLE_PERMISSIONS[role])
        assert response.headers["RateLimit-Policy"].startswith('"authenticated"')


async def test_bad_tokens_get_401_json_never_a_trace(make_client: AppFactory, token_for: Callable[..., str]) -> None:
    client = await make_client()
    good = token_for("admin")
    for header in (f"Bearer {good[:-2]}xx", "Bearer ", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", f"Token {good}"):
        response = await client.get("/whoami", headers={"Authorization": header})
        assert response.status == 401, header
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        body = await response.json()
        assert body["error"] == "Unauthorized" and body["message"] and "Traceback" not in body["message"]


async def test_the_101st_request_gets_429_with_headers_and_retry_after(make_client: AppFactory) -> None:
    client = await make_client()
    for expected_remaining in range(99, -1, -1):
        response = await client.get("/whoami")
        assert response.status == 200
        assert response.headers["X-RateLimit-Remaining"] == str(expected_remaining)
    refused = await client.get("/whoami")
    assert refused.status == 429
    body = await refused.json()
    assert body["error"] == "Too Many Requests" and body["message"]
    assert isinstance(body["retryAfter"], int) and 0 < body["retryAfter"] <= 900
    assert refused.headers["Retry-After"] == str(body["retryAfter"])
    for name in RATE_HEADERS:
        assert name in refused.headers
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > time.time() * 1000
    assert refused.headers["RateLimit"] == f'"anonymous";r=0;t={body["retryAfter"]}'


async def test_signed_in_and_anonymous_tiers_are_separate(
    make_client: AppFactory, token_for: Callable[..., str]
) -> None:
    client = await make_client(RATE_LIMIT=2, RATE_LIMIT_AUTHENTICATED=4)
    auth = {"Authorization": f"Bearer {token_for('user')}"}
    assert [(await client.get("/whoami")).status for _ in range(3)] == [200, 200, 429]
    assert [(await client.get("/whoami", headers=auth)).status for _ in range(5)] == [200] * 4 + [429]
    other = {"Authorization": f"Bearer {token_for('user', user_id='43')}"}
    assert (await client.get("/whoami", headers=other)).status == 200  # IP + user: another user's own window


async def test_bad_tokens_still_count_against_the_ip(make_client: AppFactory) -> None:
    client = await make_client(RATE_LIMIT=2)
    statuses = [(await client.get("/whoami", headers={"Authorization": "Bearer junk"})).status for _ in range(3)]
    assert statuses == [401, 401, 429]


async def test_sign_in_endpoints_have_their_own_strict_limit(make_client: AppFactory) -> None:
    client = await make_client(RATE_LIMIT_SIGNIN=2)
    statuses = [(await client.post("/auth/challenge", json={"address": "x"})).status for _ in range(3)]
    assert statuses == [400, 400, 429]
    assert (await client.get("/whoami")).status == 200  # reads are not affected


async def test_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(make_client: AppFactory) -> None:
    client = await make_client(RATE_LIMIT=3)  # TRUSTED_PROXY_HOPS=0
    statuses = [(await client.get("/whoami", headers={"X-Forwarded-For": f"203.0.113.{i}"})).status
                for i in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_behind_one_trusted_proxy_the_rightmost_entry_is_the_client(make_client: AppFactory) -> None:
    client = await make_client(RATE_LIMIT=2, TRUSTED_PROXY_HOPS=1)
    # The client rotates what it writes; the proxy's appended entry (the real client) stays the same.
    spoofed = [(await client.get("/whoami", headers={"X-Forwarded-For": f"10.9.9.{i}, 198.51.100.7"})).status
               for i in range(3)]
    assert spoofed == [200, 200, 429]
    assert (await client.get("/whoami", headers={"X-Forwarded-For": "198.51.100.8"})).status == 200


async def test_security_headers_on_every_response(make_client: AppFactory) -> None:
    client = await make_client(RATE_LIMIT=1)
    for path in ("/whoami", "/missing", "/whoami"):  # 200, 404, 429
        response = await client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in response.headers  # development profile


async def test_production_adds_hsts(make_client: AppFactory) -> None:
    client = await make_client(PROFILE="production")
    assert "max-age=" in (await client.get("/whoami")).headers["Strict-Transport-Security"]


async def test_cors_allows_only_configured_origins(make_client: AppFactory) -> None:
    client = await make_client(CORS_ORIGINS=("https://app.example",))
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Authorization, Content-Type"}
    allowed = await client.options("/whoami", headers=preflight)
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    denied = await client.options("/whoami", headers={**preflight, "Origin": "https://evil.example"})
    assert denied.status == 403 and "Access-Control-Allow-Origin" not in denied.headers
    actual = await client.get("/whoami", headers={"Origin": "https://app.example"})
    assert actual.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-RateLimit-Remaining" in actual.headers["Access-Control-Expose-Headers"]
    foreign = await client.get("/whoami", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in foreign.headers


async def test_without_configured_origins_no_cors_headers(make_client: AppFactory) -> None:
    client = await make_client()
    response = await client.get("/whoami", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_health_is_never_limited(make_client: AppFactory) -> None:
    client = await make_client(RATE_LIMIT=1)
    assert [(await client.get("/health")).status for _ in range(3)] == [200, 200, 200]


async def test_concurrent_http_clients_are_never_over_admitted(make_client: AppFactory) -> None:
    client = await make_client(RATE_LIMIT=50)
    responses = await asyncio.gather(*(client.get("/whoami") for _ in range(120)))
    statuses = [r.status for r in responses]
    assert statuses.count(200) == 50 and statuses.count(429) == 70


async def test_a_busy_anonymous_client_is_counted_exactly(make_client: AppFactory, redis_client: Any,
                                                          redis_prefix: str) -> None:
    # Concurrent requests share script runs and reserved slots; every admitted request is still counted once.
    from http_app.ratelimit import RESERVE_SECONDS

    client = await make_client(RATE_LIMIT=100_000)
    for _ in range(3):
        responses = await asyncio.gather(*(client.get("/whoami") for _ in range(100)))
        assert all(r.status == 200 for r in responses)
        remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in responses]
        assert all(100_000 - 300 - 256 <= left < 100_000 for left in remaining)
    await asyncio.sleep(RESERVE_SECONDS + 0.2)  # reservations end: unused slots are given back
    keys = [key async for key in redis_client.scan_iter(match=f"{redis_prefix}:rl:anonymous:*")]
    assert len(keys) == 1 and await redis_client.zcard(keys[0]) == 300


async def test_redis_down_reads_fail_open_and_sign_in_fails_closed(
    make_client: AppFactory, own_redis: EmbeddedRedis, token_for: Callable[..., str]
) -> None:
    client = await make_client(REDIS_URL=own_redis.url, RATE_LIMIT=1)
    assert (await client.get("/whoami")).status == 200
    own_redis.stop()
    reads = [await client.get("/whoami") for _ in range(3)]
    assert [r.status for r in reads] == [200, 200, 200]  # limit 1, but the limiter cannot count: open
    assert all("X-RateLimit-Limit" not in r.headers for r in reads)
    signed_in = await client.get("/whoami", headers={"Authorization": f"Bearer {token_for('user')}"})
    assert signed_in.status == 200 and (await signed_in.json())["role"] == "user"
    challenge = await client.post("/auth/challenge", json={"address": "11111111111111111111111111111111"})
    assert challenge.status == 503
    assert (await challenge.json())["error"] == "Service Unavailable"


async def test_cache_rides_in_the_limiter_round_trip_per_scope(
    make_client: AppFactory, token_for: Callable[..., str], redis_client: Any, redis_prefix: str
) -> None:
    client = await make_client()
    await redis_client.set(f"{redis_prefix}:cache:public", b"anonymous answer")
    assert await (await client.get("/prefetched")).json() == {"prefetched": "anonymous answer"}
    signed_in = await client.get("/prefetched", headers={"Authorization": f"Bearer {token_for('admin')}"})
    assert await signed_in.json() == {"prefetched": None}  # the admin scope has its own (empty) key


async def test_authenticated_tier_defaults_to_the_anonymous_limit(
    make_client: AppFactory, token_for: Callable[..., str]
) -> None:
    client = await make_client(RATE_LIMIT=2)
    auth = {"Authorization": f"Bearer {token_for('viewer')}"}
    responses = [await client.get("/whoami", headers=auth) for _ in range(3)]
    assert [r.status for r in responses] == [200, 200, 429]
    assert responses[0].headers["RateLimit-Policy"] == '"authenticated";q=2;w=900'


async def test_separate_middlewares_behave_like_the_combined_one(
    make_client: AppFactory, token_for: Callable[..., str]
) -> None:
    client = await make_client(middlewares=[rate_limit, authenticate], RATE_LIMIT=2)
    me = await client.get("/whoami", headers={"Authorization": f"Bearer {token_for('admin')}"})
    assert (await me.json())["role"] == "admin" and me.headers["X-RateLimit-Remaining"] == "1"
    assert (await client.get("/whoami", headers={"Authorization": "Bearer junk"})).status == 401
    assert [(await client.get("/whoami")).status for _ in range(2)] == [200, 429]  # junk used the IP's first


async def test_router_errors_carry_the_limit_headers(make_client: AppFactory) -> None:
    client = await make_client()
    missing = await client.get("/no-such-route")
    assert missing.status == 404 and missing.headers["X-RateLimit-Remaining"] == "99"
    wrong_method = await client.delete("/whoami")
    assert wrong_method.status == 405 and wrong_method.headers["X-RateLimit-Remaining"] == "98"
