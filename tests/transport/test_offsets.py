"""Dense offsets on real Redis: contiguous under concurrency, exact highwater/earliest on odd streams."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import redis.asyncio as aioredis
from faust.types import TP

from stream_app.transport.keys import KeySpace

from .helpers import produce


async def test_offsets_contiguous_under_concurrent_producers(redis_url: str, redis_client: aioredis.Redis,
                                                             keys: KeySpace) -> None:
    async def one_client(n: int) -> list[int]:
        client = aioredis.from_url(redis_url)
        offsets: list[int] = []
        try:
            for i in range(25):
                offsets += await produce(client, keys, "t", 1, [(b"k", f"{n}:{i}:{j}".encode()) for j in range(8)])
        finally:
            await client.aclose()
        return offsets

    per_client = await asyncio.gather(*(one_client(n) for n in range(8)))
    everything = sorted(o for offsets in per_client for o in offsets)
    assert everything == list(range(8 * 25 * 8))
    for offsets in per_client:
        assert offsets == sorted(offsets)  # each client's records keep their order
    entries: Any = await redis_client.xrange(keys.stream("t", 0), "-", "+")
    assert [int(eid.split(b"-")[0]) for eid, _ in entries] == list(range(1600))
    assert all(eid.endswith(b"-1") for eid, _ in entries)
    assert int(await redis_client.get(keys.counter("t", 0))) == 1600


async def test_highwater_and_earliest_on_empty_trimmed_and_gapped_streams(
    app: faust.App, redis_client: aioredis.Redis, keys: KeySpace
) -> None:
    consumer: Any = app.consumer
    empty, trimmed, drained, gapped = (TP("e", 0), TP("tr", 0), TP("dr", 0), TP("g", 0))
    for tp in (trimmed, drained, gapped):
        await produce(redis_client, keys, tp.topic, 1, [(b"k", str(i).encode()) for i in range(10)])
    await redis_client.xtrim(keys.stream("tr", 0), minid=6, approximate=False)
    await redis_client.xtrim(keys.stream("dr", 0), maxlen=0, approximate=False)
    await redis_client.xdel(keys.stream("g", 0), "0-1", "1-1", "5-1")

    highwaters = await consumer.highwaters(empty, trimmed, drained, gapped)
    earliest = await consumer.earliest_offsets(empty, trimmed, drained, gapped)
    assert highwaters == {empty: 0, trimmed: 10, drained: 10, gapped: 10}
    assert earliest == {empty: 0, trimmed: 6, drained: 10, gapped: 2}
    assert consumer.highwater(trimmed) == 10
    # a trimmed stream never reuses offsets
    assert await produce(redis_client, keys, "dr", 1, [(b"k", b"again")]) == [10]
    await app.transport.close_clients()  # type: ignore[attr-defined]


async def test_lost_counter_restarts_after_the_last_entry(redis_client: aioredis.Redis, keys: KeySpace) -> None:
    await produce(redis_client, keys, "lc", 1, [(b"k", b"v")] * 5)
    await redis_client.delete(keys.counter("lc", 0))
    assert await produce(redis_client, keys, "lc", 1, [(b"k", b"w")]) == [5]
