"""Produce throughput: the Faust producer of the `redis://` transport beside a pipelined raw XADD loop.

    .venv/bin/python -m bench.transport_produce [--quick]

Both write the same records (100-byte values, 1,000 keys over 4 partitions) to the same private Redis in
the same run; the baseline is redis-py sending `XADD <stream> * v <value>` in pipelines of 2,000.
Target: the producer reaches >= 70% of the baseline's records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import faust
import redis.asyncio as aioredis

from stream_app.transport.partitioner import partition_for_key

from .transport_common import PREFIX, private_redis, row


async def raw_xadd(client: aioredis.Redis, n: int, value: bytes) -> float:
    start = time.perf_counter()
    for first in range(0, n, 2000):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(first, min(first + 2000, n)):
                key = f"key-{i % 1000}".encode()
                pipe.xadd(f"raw:{partition_for_key(key, 4)}", {b"k": key, b"v": value})
            await pipe.execute()
    return n / (time.perf_counter() - start)


async def faust_producer(url: str, n: int, value: bytes, topic: str) -> float:
    app = faust.App("bench-produce", broker=f"{url}?prefix={PREFIX}", topic_partitions=4)
    producer: Any = app.producer
    await producer.start()
    await producer.create_topic(topic, 4, 1)
    start = time.perf_counter()
    for i in range(n):
        await producer.send(topic, f"key-{i % 1000}".encode(), value, None, None, None)
    await producer.flush()
    rate = n / (time.perf_counter() - start)
    await producer.stop()
    await app.transport.close_clients()  # type: ignore[attr-defined]
    return rate


async def main(quick: bool) -> None:
    n = 20_000 if quick else 200_000
    rounds = 1 if quick else 3
    value = b"x" * 100
    with private_redis() as (url, _):
        client = aioredis.from_url(url)
        raw, ours = [], []
        for r in range(rounds):  # alternate so background load hits both alike
            raw.append(await raw_xadd(client, n, value))
            ours.append(await faust_producer(url, n, value, f"events{r}"))
            await client.flushdb()
        await client.aclose()
    best_raw, best_ours = max(raw), max(ours)
    print(f"produce: {n:,} records x {rounds} round(s), 100-byte values, 4 partitions (best round)")
    print(row("baseline: raw redis-py pipelined XADD *", best_raw, "rec/s"))
    print(row("redis:// Faust producer send()+flush()", best_ours, "rec/s", best_raw, "target >= 70%"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
