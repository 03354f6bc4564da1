"""Lengths, highwaters, committed offsets and lag of the pipeline's topics on the Redis transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from stream_app.app import APP_ID, CHANGELOG_TOPIC, RECORDS_TOPIC, SCORES_TOPIC
from stream_app.transport.keys import KeySpace

TOPICS = (RECORDS_TOPIC, SCORES_TOPIC, CHANGELOG_TOPIC)
# Written by the worker, never consumed by its group: no committed offset, no lag.
OUTPUT_TOPICS = (SCORES_TOPIC, CHANGELOG_TOPIC)


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    length: int  # entries kept (after retention)
    highwater: int  # next offset
    committed: int | None  # next offset the group reads; None for output topics (never consumed)

    @property
    def lag(self) -> int:
        return 0 if self.committed is None else max(0, self.highwater - self.committed)


@dataclass(frozen=True)
class StreamStatus:
    members: int
    generation: str | None
    leader: str | None
    partitions: list[PartitionStatus]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def stream_status(redis: aioredis.Redis, prefix: str, group: str = APP_ID) -> StreamStatus:
    keys = KeySpace(prefix)
    group_keys = keys.group(group)
    counts = await redis.hgetall(keys.topics)
    partitions_of = {_text(k): int(v) for k, v in counts.items()}
    offsets = {_text(k): int(v) for k, v in (await redis.hgetall(group_keys.offsets)).items()}
    state = {_text(k): _text(v) for k, v in (await redis.hgetall(group_keys.state)).items()}
    members = int(await redis.zcard(group_keys.members))
    out = []
    for topic in TOPICS:
        for partition in range(partitions_of.get(topic, 0)):
            pipe = redis.pipeline(transaction=False)
            pipe.xlen(keys.stream(topic, partition))
            pipe.get(keys.counter(topic, partition))
            length, highwater = await pipe.execute()
            committed = None if topic in OUTPUT_TOPICS else offsets.get(f"{topic}:{partition}", 0)
            out.append(PartitionStatus(topic, partition, int(length), int(highwater or 0), committed))
    return StreamStatus(members, state.get("generation"), state.get("leader"), out)
