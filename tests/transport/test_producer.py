"""The Faust-facing producer on real Redis: order, metadata, headers, flush barrier, fencing, Redis restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust
import pytest
import redis.asyncio as aioredis
from faust.exceptions import ProducerSendError
from faust.types import TP

from stream_app.embedded import EmbeddedRedis
from stream_app.transport.keys import KeySpace
from stream_app.transport.partitioner import partition_for_key

from .workers import free_port


async def test_sends_keep_order_and_return_dense_offsets(producer: Any, redis_client: aioredis.Redis,
                                                         keys: KeySpace) -> None:
    futures = [await producer.send("orders", b"same-key", str(i).encode(), None, None, None) for i in range(500)]
    metadata = [await f for f in futures]
    partition = partition_for_key(b"same-key", 4)
    assert {m.partition for m in metadata} == {partition}
    assert [m.offset for m in metadata] == list(range(500))
    assert metadata[0].topic_partition == TP("orders", partition)
    entries: Any = await redis_client.xrange(keys.stream("orders", partition), "-", "+")
    assert [fields[b"v"] for _, fields in entries] == [str(i).encode() for i in range(500)]


async def test_sends_after_a_script_flush_reload_the_script_and_keep_order(producer: Any, redis_client: aioredis.Redis,
                                                                           keys: KeySpace) -> None:
    first = await producer.send_and_wait("flushed", b"k", b"before", None, None, None)
    await redis_client.script_flush()  # as after a Redis restart: the next EVALSHA gets NOSCRIPT
    futures = [await producer.send("flushed", b"k", str(i).encode(), None, None, None) for i in range(50)]
    metadata = [await f for f in futures]
    assert [m.offset for m in metadata] == list(range(first.offset + 1, first.offset + 51))
    entries: Any = await redis_client.xrange(keys.stream("flushed", first.partition), "-", "+")
    assert [fields[b"v"] for _, fields in entries] == [b"before"] + [str(i).encode() for i in range(50)]


async def test_none_key_and_value_and_headers_round_trip(app: faust.App, producer: Any) -> None:
    headers = [("trace", b"\x00\xff binary"), ("kind", b"x")]
    meta = await producer.send_and_wait("h", None, None, 2, 12.5, headers)
    consumer: Any = app.consumer
    consumer.coordinator.assignment = {TP("h", 2)}
    records = await consumer._getmany({TP("h", 2)}, timeout=0.2)
    message = consumer._to_message(TP("h", 2), records[TP("h", 2)][0])
    assert (message.key, message.value, message.timestamp, message.offset) == (None, None, 12.5, meta.offset)
    assert message.headers == headers


async def test_flush_is_a_barrier_not_a_wait_for_an_empty_queue(producer: Any) -> None:
    before = [await producer.send("busy", str(i).encode(), b"x", None, None, None) for i in range(3000)]
    stop = asyncio.Event()

    async def keep_sending() -> int:
        n = 0
        while not stop.is_set():
            await producer.send("busy", b"later", b"y", None, None, None)
            n += 1
            if n % 50 == 0:
                await asyncio.sleep(0)
        return n

    writer = asyncio.create_task(keep_sending())
    await asyncio.sleep(0)
    await asyncio.wait_for(producer.flush(), 20)  # returns although the queue keeps refilling
    assert all(f.done() and not f.exception() for f in before)
    stop.set()
    assert await writer > 0


async def test_key_partition_matches_kafka(producer: Any) -> None:
    await producer.create_topic("kp", 6, 1)
    assert producer.key_partition("kp", b"abc") == TP("kp", partition_for_key(b"abc", 6))


async def test_registry_keeps_the_first_partition_count(producer: Any, caplog: Any) -> None:
    await producer.create_topic("reg", 3, 1)
    await producer.create_topic("reg", 5, 1)
    assert "registered with 3 partitions" in caplog.text
    meta = await producer.send_and_wait("reg", b"k", b"v", None, None, None)
    assert meta.partition == partition_for_key(b"k", 3)


async def test_stale_generation_changelog_write_is_fenced(app: faust.App, producer: Any,
                                                          redis_client: aioredis.Redis) -> None:
    table = app.Table("tbl", default=int)
    changelog = table.changelog_topic.get_topic_name()
    consumer: Any = app.consumer
    app.transport.active_consumer = consumer  # type: ignore[attr-defined]
    state = app.transport.group_keys.state  # type: ignore[attr-defined]
    await redis_client.hset(state, "generation", 5)
    consumer.coordinator.generation = 5
    ok = await producer.send_and_wait(changelog, b"k", b"1", 0, None, None)
    assert ok.offset == 0
    await redis_client.hset(state, "generation", 6)  # the group moved on without us
    with pytest.raises(ProducerSendError, match="fenced"):
        await producer.send_and_wait(changelog, b"k", b"2", 0, None, None)
    other = await producer.send_and_wait("not-a-changelog", b"k", b"3", 0, None, None)
    assert other.offset == 0  # only changelogs are fenced


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_sends_survive_a_redis_restart_in_order(tmp_path: Path) -> None:
    server = EmbeddedRedis(root=tmp_path, port=free_port(), appendonly=True)
    url = server.start()
    app = faust.App("restart", broker=f"{url}?prefix=r", topic_partitions=1)
    producer: Any = app.producer
    await producer.start()
    client = aioredis.from_url(url)
    try:
        first = [await producer.send("t", b"k", str(i).encode(), 0, None, None) for i in range(200)]
        await producer.flush()
        server.stop()  # SIGTERM: the AOF is flushed, the scripts are forgotten
        during = [await producer.send("t", b"k", str(i).encode(), 0, None, None) for i in range(200, 400)]
        await asyncio.sleep(0.5)
        server.start()
        await asyncio.wait_for(producer.flush(), 30)
        offsets = [(await f).offset for f in first + during]
        assert offsets == sorted(offsets) and len(set(offsets)) == 400
        entries: Any = await client.xrange(KeySpace("r").stream("t", 0), "-", "+")
        values = [int(fields[b"v"]) for _, fields in entries]
        assert values == list(range(400))  # nothing lost, nothing reordered
        assert producer.retries >= 1
    finally:
        await client.aclose()
        await producer.stop()
        await app.transport.close_clients()  # type: ignore[attr-defined]
        server.stop()


async def test_flush_waits_for_records_in_fausts_buffer_queued_before_it(app: faust.App, producer: Any) -> None:
    """Table changelog writes go through Faust's ProducerBuffer (`send_soon`); flush() is a barrier for those too,
    and returns although the buffer keeps refilling (upstream's buffer.flush() waits for it to be empty)."""
    topic = app.topic("buffered", key_serializer="raw", value_serializer="raw")
    before = [topic.send_soon(key=str(i).encode(), value=b"x") for i in range(2000)]
    stop = asyncio.Event()

    async def keep_buffering() -> int:
        n = 0
        while not stop.is_set():  # a steady trickle, as agents updating a table
            topic.send_soon(key=b"later", value=b"y")
            n += 1
            await asyncio.sleep(0.002)
        return n

    writer = asyncio.create_task(keep_buffering())
    try:
        await asyncio.sleep(0)
        await asyncio.wait_for(producer.flush(), 20)
        assert all(f.done() and not f.exception() for f in before)
    finally:
        stop.set()
    assert await writer > 0
    await asyncio.wait_for(producer.flush(), 60)  # the later records too, before the fixture stops the producer


async def test_send_soon_skips_fausts_buffer_and_keeps_order_with_it(app: faust.App, producer: Any,
                                                                     redis_client: aioredis.Redis,
                                                                     keys: KeySpace) -> None:
    """`send_soon` (table changelog writes) queues inline; records still in Faust's buffer stay ahead of it."""
    topic = app.topic("soon", key_serializer="raw", value_serializer="raw")
    sent: list[int] = []

    def on_sent(fut: Any) -> None:
        sent.append(fut.result().offset)

    # unknown topic: the first record needs a registry round trip, so it (and all behind it) use the buffer
    futures = [topic.send_soon(key=b"k", value=str(i).encode(), callback=on_sent) for i in range(300)]
    assert producer.buffer.size == 300
    await asyncio.sleep(0)  # the buffer's task takes one record, the others are still queued behind it
    futures += [topic.send_soon(key=b"k", value=str(i).encode(), callback=on_sent) for i in range(300, 600)]
    await asyncio.wait_for(producer.flush(), 20)
    assert producer.buffer.size == 0
    futures += [topic.send_soon(key=b"k", value=str(i).encode(), callback=on_sent) for i in range(600, 900)]
    assert producer.buffer.size == 0 and len(producer._queue) == 300  # inline: straight into our send queue
    await asyncio.wait_for(producer.flush(), 20)

    assert [f.result().offset for f in futures] == list(range(900))
    assert sent == list(range(900))  # each record's callback ran once, in order
    entries: Any = await redis_client.xrange(keys.stream("soon", partition_for_key(b"k", 4)), "-", "+")
    assert [fields[b"v"] for _, fields in entries] == [str(i).encode() for i in range(900)]
