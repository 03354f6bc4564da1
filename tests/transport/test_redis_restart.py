"""A worker survives a Redis restart (AOF on): it backs off, resumes, and loses nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from stream_app.transport.keys import KeySpace

from .helpers import committed, highwaters, produce
from .workers import RedisProcess, WorkerPool

KEYS = KeySpace("rr")


async def caught_up(client: aioredis.Redis) -> bool:
    try:
        done = await committed(client, KEYS, "count")
        ends = await highwaters(client, KEYS, "events", 4)
    except Exception:
        return False
    return bool(ends) and all(done.get(tp, 0) == end for tp, end in ends.items())


async def wait_caught_up(client: aioredis.Redis, pool: WorkerPool, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await caught_up(client):
            return
        await asyncio.sleep(0.25)
    try:
        state = (await committed(client, KEYS, "count"), await highwaters(client, KEYS, "events", 4))
    except Exception as exc:
        state = exc  # type: ignore[assignment]
    raise AssertionError(f"worker did not catch up: {state}\n{pool.output()}")


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_worker_backs_off_and_resumes_across_a_redis_restart(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path / "redis-root")
    url = server.start()
    client = aioredis.from_url(url)
    out = tmp_path / "out"
    out.mkdir()
    pool = WorkerPool(f"{url}?prefix=rr&janitor_interval=0", out, session_timeout=3.0)
    try:
        worker = pool.start()
        await produce(client, KEYS, "events", 4, [(f"k{i % 9}".encode(), str(i).encode()) for i in range(1000)])
        await wait_caught_up(client, pool, 60)
        await client.aclose()
        server.stop()  # SIGTERM: AOF flushed, scripts and connections gone
        await asyncio.sleep(2.0)
        assert server.start() == url  # same port, data back from the AOF
        client = aioredis.from_url(url)
        await produce(client, KEYS, "events", 4,
                      [(f"k{i % 9}".encode(), str(i).encode()) for i in range(1000, 2000)])
        await wait_caught_up(client, pool, 60)
        assert worker.poll() is None, "the worker must not crash while Redis is away"
        seen = {seq for _, _, _, seq in pool.processed()}
        assert seen >= set(range(2000))
        assert "Redis unreachable" in pool.output()
    finally:
        pool.stop_all()
        await client.aclose()
        server.stop()


def test_helper_module_constants() -> None:
    value: Any = KEYS.stream("events", 0)
    assert value == "rr:s:{events:0}"
