"""WebSocket soak: 1,000 subscribers (graphql-transport-ws, real sockets to create_app in this process) through
reconnect storms in which half of them drop without a close frame and come back.

    .venv/bin/python -m bench.ws_storm            # 1,000 subscribers, 3 storms
    .venv/bin/python -m bench.ws_storm --quick    # 300 subscribers, 1 storm

Checked on every round (the run fails otherwise): connected subscribers get every update, reconnected ones a
snapshot holding the update they missed; afterwards open sockets and hub subscribers are 0 and fds/tasks are
back to their baseline. Figures: commit -> last delivery to the connected half, time for the dropped half to
reconnect and get its snapshot, each beside the same measured for one subscriber (the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import aiohttp
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from bench.pipeline_cycle import Bench
from bench.report import emit
from http_app.app import create_app
from http_app.graphql.ws import OPEN_SOCKETS
from http_app.keys import LIVE_HUB
from stream_app import live
from stream_app.db import create_pool
from stream_app.settings import Settings
from tests.api.seed import seed
from tests.resilience.test_ws_storm import _fds, _next, _pooled, _subscribe


async def main(args: argparse.Namespace) -> None:
    from bench.pipeline_cycle import ROOT
    from stream_app.embedded import EmbeddedServices

    embedded = EmbeddedServices(ROOT / ".solstake" / "bench")
    admin_url = os.environ.get("DATABASE_URL") or embedded.start_postgres()
    redis_url = os.environ.get("REDIS_URL") or embedded.start_redis()
    bench = Bench(admin_url, redis_url, ROOT / "bench" / "out")
    database_url = await bench.fresh_database()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, Settings.from_env({}), min_size=1, max_size=2)
    redis = aioredis.from_url(redis_url)
    votes = (await seed(pool, validators=50, runs=1, users=1)).vote_accounts
    settings = Settings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix,
                                  "JWT_SECRET": "bench-" + "x" * 40, "SIMULATOR_FALLBACK": "false",
                                  "RATE_LIMIT": "1000000000", "WS_MAX_SOCKETS_PER_CLIENT": "100000"})
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    app = server.app
    assert app is not None
    url = str(server.make_url("/graphql")).replace("http", "ws", 1)
    n, storms = (300, 1) if args.quick else (args.clients, args.storms)
    score = 10.0

    async def announce() -> tuple[str, float]:
        nonlocal score
        score += 1
        await pool.execute("UPDATE validators SET latest_score = $1", score)
        return await live.announce(redis, prefix, {"type": "scores", "run_id": f"r{score}", "epoch": 801,
                                                   "validators": votes}), time.perf_counter()

    def watched(i: int) -> str:
        return votes[i % len(votes)]

    try:
        await asyncio.wait_for(app[LIVE_HUB].connected.wait(), 10)
        # Baseline: one subscriber, same operations.
        async with aiohttp.ClientSession() as one:
            started = time.perf_counter()
            ws, _ = await _subscribe(one, url, votes[0])
            base_connect = time.perf_counter() - started
            version, sent = await announce()
            update = await _next(ws)
            assert update["version"] == version
            base_delivery = time.perf_counter() - sent
            await ws.close()
        await asyncio.sleep(0.5)
        base_fds, base_tasks = _fds() - _pooled(app), len(asyncio.all_tasks())

        half = n // 2
        steady = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        stayers = [await _subscribe(steady, url, watched(i)) for i in range(half)]
        storm = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        movers = [await _subscribe(storm, url, watched(i)) for i in range(half, n)]
        deliveries, reconnects = [], []
        for _ in range(storms):
            await storm.close()
            version, sent = await announce()

            async def got(ws: aiohttp.ClientWebSocketResponse, version: str = version) -> float:
                update = await _next(ws)
                assert update["version"] == version and [s["score"] for s in update["scores"]] == [score]
                return time.perf_counter()

            arrived = await asyncio.gather(*(got(ws) for ws, _ in stayers))
            deliveries.append(max(arrived) - sent)
            storm = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            started = time.perf_counter()
            movers = await asyncio.gather(*(_subscribe(storm, url, watched(i)) for i in range(half, n)))
            reconnects.append(time.perf_counter() - started)
            for _ws, snap in movers:
                assert snap["snapshot"] is True and [s["score"] for s in snap["scores"]] == [score]
        await storm.close()
        await steady.close()
        for _ in range(100):
            leftover = (sum(app[OPEN_SOCKETS].values()), app[LIVE_HUB].subscriber_count,
                        _fds() - _pooled(app) - base_fds, len(asyncio.all_tasks()) - base_tasks)
            if leftover[:2] == (0, 0) and leftover[2] <= 3 and leftover[3] <= 0:
                break
            await asyncio.sleep(0.1)
        print(f"{n} subscribers, {storms} storm(s) of {n - half} abrupt drops; load average {os.getloadavg()[0]:.1f}")
        print(f"  commit -> last delivery to {half} connected: max {max(deliveries) * 1000:.0f} ms "
              f"(1 subscriber: {base_delivery * 1000:.1f} ms)")
        print(f"  {n - half} reconnect + snapshot: max {max(reconnects):.2f} s "
              f"(1 subscriber: {base_connect * 1000:.1f} ms)")
        print(f"  afterwards: open sockets {leftover[0]}, hub subscribers {leftover[1]}, fds {leftover[2]:+d}, "
              f"tasks {leftover[3]:+d} vs baseline")
        assert leftover[:2] == (0, 0) and leftover[2] <= 3 and leftover[3] <= 0, leftover
        emit(f"{n} subscribers, storm: commit -> last delivery to {half} connected", max(deliveries) * 1000, "ms",
             baseline=base_delivery * 1000, baseline_label="1 subscriber", goal="< 1000")
        emit(f"{n} subscribers, storm: {n - half} reconnect + snapshot", max(reconnects), "s",
             baseline=base_connect, baseline_label="1 subscriber")
        emit(f"{n} subscribers, after storms: fds over baseline", leftover[2], "fds", goal="<= 3")
    finally:
        await server.close()
        await pool.close()
        await redis.aclose()
        await bench.drop_database(database_url)
        embedded.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 subscribers, 1 storm")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--storms", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
