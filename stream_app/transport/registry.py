"""Topic registry: partition counts (and retention settings) shared by every process through Redis.

First declaration wins, like an existing Kafka topic keeps its partition count; a process that disagrees
gets a warning and uses the registered count, so source topics and changelogs stay co-partitioned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from .keys import KeySpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicConfig:
    partitions: int
    compacting: bool = False
    retention_ms: int = 0


class TopicRegistry:
    def __init__(self, keys: KeySpace, default_partitions: Callable[[str], int]) -> None:
        self._keys = keys
        self._default_partitions = default_partitions
        self._configs: dict[str, TopicConfig] = {}

    def cached_partitions(self, topic: str) -> int | None:
        config = self._configs.get(topic)
        return config.partitions if config else None

    def cached_config(self, topic: str) -> TopicConfig | None:
        return self._configs.get(topic)

    def known_topics(self) -> dict[str, TopicConfig]:
        return dict(self._configs)

    async def partitions(self, client: aioredis.Redis, topic: str) -> int:
        cached = self.cached_partitions(topic)
        if cached is not None:
            return cached
        return (await self.config(client, topic)).partitions

    async def config(self, client: aioredis.Redis, topic: str) -> TopicConfig:
        cached = self._configs.get(topic)
        if cached is not None:
            return cached
        raw = await client.hget(self._keys.topics, topic)
        if raw is None:
            return await self.declare(client, topic, self._default_partitions(topic))
        return await self._read(client, topic, int(raw))

    async def declare(
        self,
        client: aioredis.Redis,
        topic: str,
        partitions: int,
        *,
        compacting: bool | None = None,
        retention_ms: int | None = None,
    ) -> TopicConfig:
        if partitions <= 0:
            raise ValueError(f"topic {topic!r} needs at least one partition, got {partitions}")
        async with client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._keys.topics, topic, partitions)
            pipe.hget(self._keys.topics, topic)
            if compacting is not None:
                pipe.hset(self._keys.topic_config(topic), "compacting", int(compacting))
            if retention_ms is not None:
                pipe.hset(self._keys.topic_config(topic), "retention_ms", int(retention_ms))
            results = await pipe.execute()
        registered = int(results[1])
        if registered != partitions:
            log.warning(
                "topic %r is registered with %d partitions; ignoring the requested %d", topic, registered, partitions
            )
        return await self._read(client, topic, registered)

    async def _read(self, client: aioredis.Redis, topic: str, partitions: int) -> TopicConfig:
        raw = await client.hgetall(self._keys.topic_config(topic))
        config = TopicConfig(
            partitions=partitions,
            compacting=raw.get(b"compacting") == b"1",
            retention_ms=int(raw.get(b"retention_ms", 0) or 0),
        )
        self._configs[topic] = config
        return config
