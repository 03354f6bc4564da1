"""Consumer positions and fetching on real Redis (no worker: the consumer object is driven directly)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
import pytest
import redis.asyncio as aioredis
from faust.types import TP

from stream_app.transport import scripts
from stream_app.transport.keys import KeySpace, tp_field

TP0, TP1 = TP("events", 0), TP("events", 1)


@pytest.fixture
async def consumer(app: faust.App) -> AsyncIterator[Any]:
    """The app's consumer holding TP0 and TP1 as if assigned in generation 1."""
    consumer: Any = app.consumer
    consumer.coordinator.assignment = {TP0, TP1}
    consumer.coordinator.generation = 1
    consumer.coordinator.member_id = "me"
    yield consumer
    await app.transport.close_clients()  # type: ignore[attr-defined]


async def fill(client: aioredis.Redis, keys: KeySpace, tp: TP, n: int) -> None:
    """Append n records `k<i>`/`v<i>` with timestamps 1000+i ms to exactly this partition."""
    args: list[Any] = [0, ""]
    for i in range(n):
        args += [1000 + i, 3, f"k{i}".encode(), f"v{i}".encode(), b""]
    await scripts.run(client, "produce", [keys.stream(tp.topic, tp.partition), keys.counter(tp.topic, tp.partition),
                                          "x"], args)


async def test_getmany_reads_only_active_partitions_from_the_reset_position(
    consumer: Any, redis_client: aioredis.Redis, keys: KeySpace
) -> None:
    await fill(redis_client, keys, TP0, 5)
    await fill(redis_client, keys, TP1, 3)
    records = await consumer._getmany({TP1}, timeout=0.2)
    assert list(records) == [TP1]
    assert [r.offset for r in records[TP1]] == [0, 1, 2]
    first = records[TP1][0]
    message = consumer._to_message(TP1, first)
    assert (message.key, message.value, message.timestamp, message.offset) == (b"k0", b"v0", 1.0, 0)
    assert await consumer._getmany({TP1}, timeout=0.05) == {}  # nothing new
    records = await consumer._getmany({TP0, TP1}, timeout=0.2)
    assert [r.offset for r in records[TP0]] == [0, 1, 2, 3, 4]


async def test_blocked_read_wakes_on_new_data(consumer: Any, redis_client: aioredis.Redis, keys: KeySpace) -> None:
    await consumer._getmany({TP0}, timeout=0.05)  # resolves the position (empty stream -> 0)
    reader = asyncio.create_task(consumer._getmany({TP0}, timeout=5.0))
    await asyncio.sleep(0.2)
    await fill(redis_client, keys, TP0, 2)
    records = await asyncio.wait_for(reader, 3.0)
    assert [r.offset for r in records[TP0]] == [0, 1]


async def test_seek_during_a_blocked_read_discards_the_stale_batch(
    consumer: Any, redis_client: aioredis.Redis, keys: KeySpace
) -> None:
    await consumer._getmany({TP0}, timeout=0.05)
    reader = asyncio.create_task(consumer._getmany({TP0}, timeout=5.0))
    await asyncio.sleep(0.2)
    await consumer.seek(TP0, 1)
    await fill(redis_client, keys, TP0, 3)
    assert await asyncio.wait_for(reader, 3.0) == {}
    records = await consumer._getmany({TP0}, timeout=0.2)
    assert [r.offset for r in records[TP0]] == [1, 2]


async def test_seek_wait_keeps_read_offset_in_sync(consumer: Any) -> None:
    await consumer.seek_wait({TP0: 7, TP1: 0})
    assert consumer._read_offset[TP0] == 7
    assert TP1 not in consumer._read_offset
    assert await consumer.position(TP0) == 7


async def test_seek_to_committed_moves_only_committed_partitions(
    consumer: Any, redis_client: aioredis.Redis, keys: KeySpace, app: faust.App
) -> None:
    await fill(redis_client, keys, TP0, 5)
    await redis_client.hset(keys.group(app.conf.id).offsets, tp_field(TP0), 3)
    await consumer.seek_wait({TP1: 2})
    committed = await consumer.seek_to_committed()
    assert committed == {TP0: 3, TP1: None}
    assert await consumer.position(TP0) == 3
    assert await consumer.position(TP1) == 2  # no commit: position left alone


async def test_committed_past_highwater_is_reset_and_reported(
    consumer: Any, redis_client: aioredis.Redis, keys: KeySpace, app: faust.App, caplog: Any
) -> None:
    await fill(redis_client, keys, TP0, 4)
    await redis_client.hset(keys.group(app.conf.id).offsets, tp_field(TP0), 1000)  # Redis lost data
    committed = await consumer.seek_to_committed()
    assert committed[TP0] == 0  # auto_offset_reset=earliest
    assert consumer.offset_resets == 1
    assert "past its highwater" in caplog.text


async def test_auto_offset_reset_latest(redis_url: str, redis_prefix: str, redis_client: aioredis.Redis,
                                        keys: KeySpace) -> None:
    app = faust.App(f"latest-{redis_prefix}", broker=f"{redis_url}?prefix={redis_prefix}",
                    consumer_auto_offset_reset="latest")
    consumer: Any = app.consumer
    consumer.coordinator.assignment = {TP0}
    await fill(redis_client, keys, TP0, 4)
    assert await consumer._getmany({TP0}, timeout=0.05) == {}
    assert await consumer.position(TP0) == 4
    await app.transport.close_clients()  # type: ignore[attr-defined]


async def test_fetch_survives_redis_errors(app: faust.App, redis_prefix: str) -> None:
    dead = faust.App(f"dead-{redis_prefix}", broker="redis://127.0.0.1:1/0?socket_timeout=2")
    consumer: Any = dead.consumer
    consumer.coordinator.assignment = {TP0}
    assert await consumer._getmany({TP0}, timeout=0.1) == {}
    assert consumer._backoff > 0
    await dead.transport.close_clients()  # type: ignore[attr-defined]
