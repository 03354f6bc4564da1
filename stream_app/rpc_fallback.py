"""Where the pipeline records that it fell back to the built-in RPC simulator (development only).

One Redis key, `<REDIS_PREFIX>:rpc:fallback`, holding a JSON object while the fallback is active and
absent otherwise: `{"active": true, "url": simulator URL, "configured": [configured RPC URLs],
"reason": why they were not used, "since": unix seconds}`. The supervisor writes it, the fetcher stamps
runs with source "simulator" while it is set, and /health and systemStats read it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

KEY_SUFFIX = ":rpc:fallback"


def fallback_key(prefix: str) -> str:
    return f"{prefix}{KEY_SUFFIX}"


async def record_fallback(redis: aioredis.Redis, prefix: str, *, url: str, configured: list[str],
                          reason: str) -> dict[str, Any]:
    info = {"active": True, "url": url, "configured": configured, "reason": reason, "since": time.time()}
    await redis.set(fallback_key(prefix), orjson.dumps(info))
    return info


async def clear_fallback(redis: aioredis.Redis, prefix: str) -> None:
    await redis.delete(fallback_key(prefix))


async def read_fallback(redis: aioredis.Redis, prefix: str) -> dict[str, Any] | None:
    raw = await redis.get(fallback_key(prefix))
    if raw is None:
        return None
    try:
        info = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None
