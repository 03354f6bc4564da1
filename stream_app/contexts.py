"""Cluster contexts by run id: an in-process cache fed by run headers, backed by a Redis key.

The fetcher stores each run's context under `<prefix>:ctx:<run_id>` before producing any record, so a
worker that joins mid-run (and never saw the header on its partitions) can still score.
"""

from __future__ import annotations

from collections import OrderedDict

import orjson
import redis.asyncio as aioredis

from stream_app.messages import dumps_wide
from stream_app.records import ClusterContext, RecordError

CACHE_SIZE = 32


def context_key(prefix: str, run_id: str) -> str:
    return f"{prefix}:ctx:{run_id}"


async def store_context(redis: aioredis.Redis, prefix: str, context: ClusterContext, ttl_seconds: int) -> None:
    await redis.set(context_key(prefix, context.run_id), dumps_wide(context), ex=ttl_seconds)


class ContextCache:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._cache: OrderedDict[str, ClusterContext] = OrderedDict()

    def put(self, context: ClusterContext) -> None:
        self._cache[context.run_id] = context
        self._cache.move_to_end(context.run_id)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def get(self, run_id: str) -> ClusterContext | None:
        context = self._cache.get(run_id)
        if context is not None:
            return context
        raw = await self.redis.get(context_key(self.prefix, run_id))
        if raw is None:
            return None
        try:
            context = ClusterContext.from_dict(orjson.loads(raw))
        except (orjson.JSONDecodeError, RecordError):
            return None
        self.put(context)
        return context
