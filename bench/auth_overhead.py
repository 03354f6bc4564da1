"""What authentication + rate limiting cost per request, beside the bare handler serving the same cached bytes.

    .venv/bin/python -m bench.auth_overhead [--quick] [--concurrency 32]

A server process (uvloop, no access log) hosts every variant as a sub-app; this process drives it with a lean
keep-alive HTTP/1.1 client (raw asyncio streams, so the client is not the bottleneck it would be with a full
HTTP client library). Variants, each answering a tiny (~60 B) and a large (~690 KB) cached JSON body:

    bare-redis   no middleware; the handler GETs the cached bytes from Redis with redis-py (the baseline)
    bare-line    the same GET through RedisLine, the lean connection our limiter uses (a fairer baseline)
    bare-memory  no middleware; bytes from process memory (what a local cache hit costs; for reference)
    naive        pyjwt HS256 verify on every request, then a separate sliding-window Lua round trip,
                 then the cache GET: three steps, two Redis round trips
    ours-2rt     our middlewares (verified-token memo; limiter Lua also checks the jti deny-list),
                 handler GETs the cache itself: two round trips
    ours-1rt     our middlewares with the cache-key hook: limiter + deny-list EVALSHA and the cache GET
                 pipelined in ONE round trip (the default); requests of one client in one loop iteration
                 share the EVALSHA
    ours-1rt-lua the same, but the script itself GETs the cache (one EVALSHA; the value passes through Lua)

Then the limiter alone, in this process: web CPU and EVALSHA runs per request with one script run per request,
one per client and loop iteration, and that plus reserved slots for a busy anonymous client.

Throughput runs `--concurrency` connections; latency runs one connection, sequential. Both run in 0.5 s slices
with the variants interleaved, so load drift from other processes hits all of them alike. Beside req/s the
bench reports the web process's CPU time per request (from /proc) and Redis's (INFO cpu): on a shared machine
CPU per request is the steadier measure of what the layer costs. Redis: a private embedded one (so its CPU is
ours alone) unless --redis-url. The limiter gets a limit no run reaches.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from bench.report import emit

ROOT = Path(__file__).resolve().parent.parent
LARGE_SOURCE = ROOT.parent / "shared" / "data" / "solana-mainnet" / "laine_getVoteAccounts_mainnet_e752_2025-03-07.json"
LARGE_BYTES = 690 * 1024
SECRET = "bench-secret-" + "b" * 40
VARIANTS = ("bare-redis", "bare-line", "bare-memory", "naive", "ours-2rt", "ours-1rt", "ours-1rt-lua")
SIZES = ("tiny", "large")
NAIVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local used = redis.call('ZCARD', KEYS[1])
if used < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000))
  return {1, used + 1}
end
return {0, used}
"""


def payloads() -> dict[str, bytes]:
    """A tiny answer and a ~690 KB one cut from real mainnet vote accounts (valid JSON either way)."""
    import orjson

    tiny = orjson.dumps({"data": {"validator": {"voteAccount": "Vote111", "latestScore": 91.5}}})
    accounts = orjson.loads(LARGE_SOURCE.read_bytes())["result"]["current"] if LARGE_SOURCE.exists() else []
    items: list[Any] = []
    body = b""
    for i in range(100_000):
        items.append(accounts[i % len(accounts)] if accounts else {"votePubkey": f"v{i}", "commission": i % 100})
        if i % 50 == 0:
            body = orjson.dumps({"data": {"validators": items}})
            if len(body) >= LARGE_BYTES:
                break
    return {"tiny": tiny, "large": body}


# --------------------------------------------------------------------------------------------- server


def build_server(redis_url: str, prefix: str) -> Any:
    import jwt
    import redis.asyncio as aioredis
    from aiohttp import web

    from http_app.access import access_middlewares, install_access_control
    from http_app.keys import REDIS
    from http_app.ratelimit import CACHE_KEY_HOOK, PREFETCHED_CACHE, RATE_LIMITING
    from http_app.redis_line import RedisLine
    from stream_app.settings import Settings

    settings = Settings.from_env({
        "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "JWT_SECRET": SECRET,
        "RATE_LIMIT": "1000000000", "RATE_LIMIT_AUTHENTICATED": "1000000000", "RATE_WINDOW": "10",
    })
    bodies = payloads()
    redis = aioredis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    root = web.Application()

    def cache_key(size: str) -> str:
        return f"{prefix}:cache:{size}"

    async def from_redis(request: web.Request) -> web.Response:
        body = await redis.get(cache_key(request.match_info["size"]))
        return web.Response(body=body, content_type="application/json")

    line = RedisLine(redis_url)

    async def from_line(request: web.Request) -> web.Response:
        body = await line.call("GET", cache_key(request.match_info["size"]))
        return web.Response(body=body, content_type="application/json")

    async def from_memory(request: web.Request) -> web.Response:
        return web.Response(body=bodies[request.match_info["size"]], content_type="application/json")

    async def prefetched(request: web.Request) -> web.Response:
        body = request.get(PREFETCHED_CACHE)
        if body is None:  # a miss would go to the resolver; here it never happens
            body = await redis.get(cache_key(request.match_info["size"]))
        return web.Response(body=body, content_type="application/json")

    naive_script = redis.register_script(NAIVE_LUA)
    naive_counter = iter(range(10**12))

    @web.middleware
    async def naive(request: web.Request, handler: Any) -> web.StreamResponse:
        token = request.headers["Authorization"][7:]
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="sol-stake-api", issuer="sol-stake",
                            options={"require": ["exp", "iat", "sub", "jti"]})
        allowed, _used = await naive_script(keys=[f"{prefix}:naive:{claims['userId']}"],
                                            args=[10**9, 10_000_000, f"m{next(naive_counter)}"])
        if not allowed:
            return web.json_response({"error": "Too Many Requests"}, status=429)
        return await handler(request)

    def sub(middlewares: list[Any], handler: Any, *, ours: bool = False, hook: bool = False,
            in_script: bool = False) -> web.Application:
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/{size}", handler)
        if ours:
            app[REDIS] = redis
            install_access_control(app, settings)
        if hook:
            async def key_for(request: web.Request, principal: Any) -> str | None:
                return cache_key(request.match_info.get("size", "") or request.path.rsplit("/", 1)[-1])

            app[CACHE_KEY_HOOK] = key_for
            app[RATE_LIMITING].cache_in_script = in_script
        return app

    root.add_subapp("/bare-redis", sub([], from_redis))
    root.add_subapp("/bare-line", sub([], from_line))
    root.add_subapp("/bare-memory", sub([], from_memory))
    root.add_subapp("/naive", sub([naive], from_redis))
    root.add_subapp("/ours-2rt", sub(access_middlewares(), from_redis, ours=True))
    root.add_subapp("/ours-1rt", sub(access_middlewares(), prefetched, ours=True, hook=True))
    root.add_subapp("/ours-1rt-lua", sub(access_middlewares(), prefetched, ours=True, hook=True, in_script=True))

    async def seed_cache(app: web.Application) -> AsyncIterator[None]:
        for size, body in bodies.items():
            await redis.set(cache_key(size), body)
        yield
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()

    root.cleanup_ctx.append(seed_cache)
    return root


def serve(port: int, redis_url: str, prefix: str) -> None:
    import uvloop
    from aiohttp import web

    uvloop.install()
    profile_to = os.environ.get("BENCH_PROFILE")  # e.g. /tmp/server.prof: where the server's time goes
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        web.run_app(build_server(redis_url, prefix), host="127.0.0.1", port=port, access_log=None,
                    print=lambda *_: None)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)


# --------------------------------------------------------------------------------------------- client


class Run:
    def __init__(self) -> None:
        self.done = 0
        self.bad = 0
        self.latencies: list[float] = []


async def connection(port: int, request: bytes, deadline: float, run: Run, timed: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            started = time.perf_counter()
            if started >= deadline:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"content-length:")
            length = int(head[at + 15 : head.find(b"\r\n", at)])
            await reader.readexactly(length)
            if timed:
                run.latencies.append(time.perf_counter() - started)
            if head[9:12] == b"200":
                run.done += 1
            else:
                run.bad += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def drive(port: int, path: str, token: str, seconds: float, concurrency: int, timed: bool) -> Run:
    request = (f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
               "Accept: application/json\r\n\r\n").encode()
    await connection(port, request, time.perf_counter() + 0.2, Run(), False)  # warm-up
    run = Run()
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(connection(port, request, deadline, run, timed) for _ in range(concurrency)))
    return run


async def wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"bench server exited with {process.returncode}")
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise SystemExit("bench server did not start")


def redis_for_bench(url: str | None) -> tuple[str, Callable[[], None]]:
    """A private Redis by default, so its CPU time per request is ours alone (`--redis-url` to share one)."""
    if url:
        return url, lambda: None
    from stream_app.embedded import EmbeddedRedis
    from tests.auth.conftest import free_port  # a small helper; no test machinery is involved

    server = EmbeddedRedis(root=ROOT / ".solstake" / "bench", port=free_port(), appendonly=False)
    return server.start(), server.stop


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_cpu_seconds(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure(args: argparse.Namespace, port: int, token: str, server_pid: int, redis: Any
                  ) -> dict[tuple[str, str], dict[str, float]]:
    """Many short slices, variants interleaved, so load from other processes spreads evenly over them."""
    cycles = 2 if args.quick else 8
    seconds = 0.5
    totals: dict[tuple[str, str], dict[str, float]] = {}
    latencies: dict[tuple[str, str], list[float]] = {}
    for _cycle in range(cycles):
        for size in SIZES:
            for variant in VARIANTS:
                if args.only and variant not in args.only:
                    continue
                path = f"/{variant}/{size}"
                cpu0, rcpu0, t0 = process_cpu_seconds(server_pid), await redis_cpu_seconds(redis), time.perf_counter()
                throughput = await drive(port, path, token, seconds, args.concurrency, timed=False)
                elapsed = time.perf_counter() - t0
                cpu = process_cpu_seconds(server_pid) - cpu0
                rcpu = await redis_cpu_seconds(redis) - rcpu0
                latency = await drive(port, path, token, seconds / 2, 1, timed=True)
                if throughput.bad or latency.bad:
                    raise SystemExit(f"{path}: {throughput.bad + latency.bad} non-200 answers")
                entry = totals.setdefault((variant, size), {"done": 0, "seconds": 0, "cpu": 0, "rcpu": 0})
                entry["done"] += throughput.done
                entry["seconds"] += elapsed - 0.2  # drive() spends 0.2 s warming its connection first
                entry["cpu"] += cpu
                entry["rcpu"] += rcpu
                latencies.setdefault((variant, size), []).extend(latency.latencies)
    return {
        key: {
            "rps": entry["done"] / entry["seconds"],
            "cpu_us": 1e6 * entry["cpu"] / entry["done"],
            "redis_us": 1e6 * entry["rcpu"] / entry["done"],
            "p50": statistics.median(latencies[key]) * 1000,
        }
        for key, entry in totals.items()
    }


def report(results: dict[tuple[str, str], dict[str, float]], concurrency: int, sizes: dict[str, int]) -> None:
    print(f"\nauth + rate limit overhead (concurrency {concurrency}; p50 from one sequential connection;")
    print("server CPU = web process CPU per request, the capacity measure least disturbed by other load)")
    print(f"{'payload':<11} {'variant':<13} {'req/s':>7} {'% bare':>7} {'server CPU us':>14} {'capacity %':>11} "
          f"{'redis CPU us':>13} {'p50 ms':>7} {'added p50':>10}")
    for size in SIZES:
        base = results[("bare-redis", size)]
        for variant in VARIANTS:
            row = results[(variant, size)]
            print(f"{size + ' ' + _human(sizes[size]):<11} {variant:<13} {row['rps']:>7.0f} "
                  f"{100 * row['rps'] / base['rps']:>6.0f}% {row['cpu_us']:>14.0f} "
                  f"{100 * base['cpu_us'] / row['cpu_us']:>10.0f}% {row['redis_us']:>13.1f} "
                  f"{row['p50']:>7.3f} {row['p50'] - base['p50']:>+10.3f}")
    print("\ngoal: full stack (ours-1rt) keeps >= 60% of bare throughput, adds <= 1 ms p50")
    for size in SIZES:
        ours = results[("ours-1rt", size)]
        for baseline in ("bare-redis", "bare-line"):
            base = results[(baseline, size)]
            print(f"  {size:<5} vs {baseline:<10}: throughput {100 * ours['rps'] / base['rps']:.0f}%, "
                  f"capacity (server CPU) {100 * base['cpu_us'] / ours['cpu_us']:.0f}%, "
                  f"p50 {ours['p50'] - base['p50']:+.3f} ms")
            emit(f"rate limit + auth, {size} answer: throughput vs {baseline}", ours["rps"], "req/s",
                 baseline=base["rps"], baseline_label=baseline, goal=">= 60%")
        emit(f"rate limit + auth, {size} answer: added p50", ours["p50"] - results[("bare-redis", size)]["p50"],
             "ms", goal="<= 1")


def token_micro(token: str) -> None:
    """What remembering verified tokens saves: a full RFC 8725 verification vs a memo hit (same process)."""
    import timeit

    from http_app.auth import AccessControl
    from http_app.tokens import verify_access_token
    from stream_app.settings import Settings

    control = AccessControl(Settings.from_env({"JWT_SECRET": SECRET}))
    control.verify(token)
    rounds = 5000
    full = min(timeit.repeat(lambda: verify_access_token(control.keyring, token), number=rounds, repeat=3))
    memo = min(timeit.repeat(lambda: control.verify(token), number=rounds, repeat=3))
    print(f"\ntoken check: full verification {1e6 * full / rounds:.1f} us, remembered {1e6 * memo / rounds:.2f} us")


async def limiter_micro(redis_url: str, prefix: str) -> None:
    """The limiter alone (web-process CPU per request, and EVALSHA runs per request): one script run per
    request, one per client and loop iteration (shared), and shared plus reserved slots (the default).
    32 tasks, one anonymous client, each hit followed by its headers and a yield, as a request would."""
    import redis.asyncio as aioredis

    from http_app.ratelimit import Policy, SlidingWindowLimiter
    from http_app.redis_line import RedisLine

    client = aioredis.from_url(redis_url)
    policy = Policy("anonymous", 10**9, 900)
    print("\nlimiter alone, 32 concurrent requests of one anonymous client (best of 3 x 16,000):")
    try:
        for label, share, reserve in (("one EVALSHA per request", False, False),
                                      ("shared per loop iteration", True, False),
                                      ("shared + reserved slots", True, True)):
            line = RedisLine(redis_url)
            limiter = SlidingWindowLimiter(client, f"{prefix}:micro:{label[:3]}", line, share=share,
                                           reserve=reserve)

            async def requests(count: int, limiter: SlidingWindowLimiter = limiter) -> None:
                for _ in range(count):
                    (await limiter.hit(policy, "203.0.113.9|-")).headers()
                    await asyncio.sleep(0)

            await requests(100)
            calls0 = await _evalsha_calls(client)
            best = float("inf")
            for _ in range(3):
                cpu0 = time.process_time()
                await asyncio.gather(*(requests(500) for _ in range(32)))
                best = min(best, time.process_time() - cpu0)
            calls = (await _evalsha_calls(client) - calls0) / 48_000
            await line.close()
            print(f"  {label:<27} {1e6 * best / 16_000:6.2f} us CPU per request   {calls:.3f} EVALSHA per request")
            emit(f"limiter alone, {label}: web CPU per request", 1e6 * best / 16_000, "us")
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:micro:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def _evalsha_calls(client: Any) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def _human(size: int) -> str:
    return f"{size / 1024:.0f}K" if size >= 1024 else f"{size}B"


async def main_async(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis

    from http_app.tokens import Identity, Keyring, issue_access_token
    from stream_app.settings import Settings
    from tests.auth.conftest import free_port

    redis_url, stop_redis = redis_for_bench(args.redis_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    port = free_port()
    command = [sys.executable, "-m", "bench.auth_overhead", "--serve", str(port), redis_url, prefix]
    server = subprocess.Popen(command, cwd=ROOT)  # noqa: ASYNC220 - started once, before any measuring
    redis = aioredis.from_url(redis_url)
    try:
        await wait_for(port, server)
        keyring = Keyring.from_settings(Settings.from_env({"JWT_SECRET": SECRET}))  # as the server derives it
        token = issue_access_token(keyring, Identity(user_id="1", role="user"))
        results = await measure(args, port, token, server.pid, redis)
        if args.only:
            for (variant, size), row in sorted(results.items()):
                print(variant, size, {k: round(v, 3) for k, v in row.items()})
            return
        report(results, args.concurrency, {k: len(v) for k, v in payloads().items()})
        token_micro(token)
        await limiter_micro(redis_url, prefix)
    finally:
        await redis.aclose()
        server.terminate()
        server.wait(timeout=10)
        stop_redis()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis-url", help="use this Redis instead of a private embedded one")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, help="measure only these variants (no report)")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "REDIS_URL", "PREFIX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2])
        return
    import uvloop

    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
