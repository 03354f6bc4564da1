"""Test helpers that talk to Redis directly through the driver's own scripts (no Faust involved)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from stream_app.transport import scripts
from stream_app.transport.keys import KeySpace
from stream_app.transport.partitioner import partition_for_key


async def produce(client: aioredis.Redis, keys: KeySpace, topic: str, partitions: int,
                  records: Sequence[tuple[bytes, bytes]], ts_ms: int = 0) -> list[int]:
    """Append key/value records with murmur2 partitioning, one pipeline; returns each record's offset."""
    per_tp: dict[int, list[int]] = {}
    for i, (key, _) in enumerate(records):
        per_tp.setdefault(partition_for_key(key, partitions), []).append(i)
    offsets = [0] * len(records)
    async with client.pipeline(transaction=False) as pipe:
        order = sorted(per_tp)
        for p in order:
            args: list[Any] = [0, ""]
            for i in per_tp[p]:
                key, value = records[i]
                args.extend([ts_ms, 3, key, value, b""])
            pipe.execute_command(*scripts.evalsha_args(
                "produce", [keys.stream(topic, p), keys.counter(topic, p), "unused"], args))
        try:
            results = await pipe.execute()
        except Exception:
            await scripts.load_all(client)
            return await produce(client, keys, topic, partitions, records, ts_ms)
    for p, result in zip(order, results, strict=True):
        for n, i in enumerate(per_tp[p]):
            offsets[i] = int(result[1]) + n
    return offsets


async def changelog_state(client: aioredis.Redis, keys: KeySpace, topic: str, partitions: int) -> dict[str, Any]:
    """The table a changelog describes: last value per key (JSON keys/values, as Faust writes them)."""
    state: dict[str, Any] = {}
    for p in range(partitions):
        entries: Any = await client.xrange(keys.stream(topic, p), "-", "+")
        for _, fields in entries:
            key = json.loads(fields[b"k"])
            if b"v" in fields:
                state[key] = json.loads(fields[b"v"])
            else:
                state.pop(key, None)
    return state


async def committed(client: aioredis.Redis, keys: KeySpace, group: str) -> dict[str, int]:
    raw: Any = await client.hgetall(keys.group(group).offsets)
    return {k.decode(): int(v) for k, v in raw.items()}


async def highwaters(client: aioredis.Redis, keys: KeySpace, topic: str, partitions: int) -> dict[str, int]:
    raw: Any = await client.mget([keys.counter(topic, p) for p in range(partitions)])
    return {f"{topic}:{p}": int(v or 0) for p, v in enumerate(raw)}
