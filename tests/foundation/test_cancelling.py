"""`cancel_and_wait` stops a task even when a cancellation is lost (CPython gh-86296 via redis-py)."""

from __future__ import annotations

import asyncio
import random

import redis.asyncio as aioredis

from stream_app.cancelling import cancel_and_wait


async def test_a_task_that_swallows_one_cancellation_is_still_stopped() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed == 0:  # what wait_for does on 3.11 when the inner call just finished
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, patience=5.0)
    assert task.cancelled() and swallowed == 1


async def test_a_task_that_never_stops_is_reported_not_waited_for_forever() -> None:
    released = False

    async def immortal() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if released:
                    raise

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, patience=0.5, every=0.1) is False
    assert not task.done()
    released = True
    assert await cancel_and_wait(task, patience=5.0)


async def test_xread_loops_on_fresh_redis_clients_always_stop(redis_url: str, redis_prefix: str) -> None:
    """The real race: cancelled at random moments of its first commands, every loop stops."""
    rng = random.Random(7)

    async def tail(client: aioredis.Redis) -> None:
        while True:
            await client.xread({f"{redis_prefix}:cancel": "$"}, count=10, block=5_000)

    for _ in range(60):
        client = aioredis.from_url(redis_url, socket_timeout=15.0, socket_connect_timeout=2.0)
        task = asyncio.create_task(tail(client))
        await asyncio.sleep(rng.random() * 0.01)
        assert await cancel_and_wait(task, patience=5.0)
        assert task.done()
        await client.aclose()
