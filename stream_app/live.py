"""Live-update announcements between the pipeline sink and the web tier.

One Redis Stream, `<prefix>:live`, capped at about 10,000 entries. Each entry carries one JSON field `e`;
its entry id is the monotonically increasing version that subscribers de-duplicate on.

Events (all JSON objects with a "type"):
    {"type": "scores", "run_id": str, "epoch": int, "validators": [vote_pubkey, ...]}
    {"type": "run", "run_id": str, "status": "running|completed|partial|failed",
     "success_count": int, "fail_count": int, "validator_count": int}
    {"type": "commission", "vote_pubkey": str, "epoch": int, "kind": "rug|hike|decrease|change",
     "old_commission": int|None, "new_commission": int|None}
    {"type": "cache", "action": "clear"}   (web tier only: an admin cleared the response cache)

The sink calls `announce` after each persisted batch; web processes `tail` the stream to invalidate
caches, warm hot queries and feed GraphQL subscriptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio as aioredis

STREAM_SUFFIX = ":live"
MAXLEN = 10_000
EVENT_TYPES = frozenset({"scores", "run", "commission", "cache"})


def stream_key(prefix: str) -> str:
    return f"{prefix}{STREAM_SUFFIX}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def announce(redis: aioredis.Redis, prefix: str, event: dict[str, Any]) -> str:
    """Append one event; returns its entry id (the version subscribers see)."""
    if event.get("type") not in EVENT_TYPES:
        kind = event.get("type")
        raise ValueError(f"unknown live event type {kind!r}; expected one of {sorted(EVENT_TYPES)}")
    entry_id = await redis.xadd(
        stream_key(prefix), {"e": orjson.dumps(event)}, maxlen=MAXLEN, approximate=True
    )
    return _text(entry_id)


def decode_entry(fields: dict[Any, Any]) -> dict[str, Any] | None:
    """The event of one stream entry, or None if the entry is not one of ours."""
    raw = fields.get(b"e", fields.get("e"))
    if raw is None:
        return None
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


async def latest_id(redis: aioredis.Redis, prefix: str) -> str:
    """Id of the newest entry, or "0-0" when the stream is empty or missing."""
    entries: Any = await redis.xrevrange(stream_key(prefix), count=1)
    return _text(entries[0][0]) if entries else "0-0"


async def tail(
    redis: aioredis.Redis,
    prefix: str,
    last_id: str = "$",
    *,
    block_ms: int = 5_000,
    count: int = 500,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield `(entry_id, event)` for every entry after `last_id`, forever (XREAD BLOCK loop).

    `last_id="$"` means "only what arrives from now on"; it is pinned to the newest id on the first
    call, so nothing announced between two reads is missed. Malformed entries are skipped.
    """
    key = stream_key(prefix)
    if last_id == "$":
        last_id = await latest_id(redis, prefix)
    while True:
        reply: Any = await redis.xread({key: last_id}, count=count, block=block_ms)
        for _stream, entries in reply or ():
            for raw_id, fields in entries:
                last_id = _text(raw_id)
                event = decode_entry(fields)
                if event is not None:
                    yield last_id, event
