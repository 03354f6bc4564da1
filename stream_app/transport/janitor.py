"""Keeps Redis memory bounded: time retention by highwater checkpoints, and changelog compaction.

Offsets are not timestamps, so retention records `(server time, highwater)` checkpoints per partition and
trims with `XTRIM MINID <highwater recorded at least retention ago>`. Compaction keeps the newest entry per
key below a watermark and XDELs the superseded ones; it never deletes a partition's last entry (Recovery
waits for offset highwater - 1) and keeps tombstones that nothing newer supersedes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from faust.types import TP

from .keys import KeySpace

if TYPE_CHECKING:
    from .transport import Transport

log = logging.getLogger(__name__)

SCAN_CHUNK = 1000


def superseded_ids(entries: Iterable[tuple[bytes, bytes | None]]) -> list[bytes]:
    """Ids of entries whose key appears again later. Pure: `entries` = (id, key) in log order."""
    newest: dict[bytes | None, bytes] = {}
    doomed: list[bytes] = []
    for entry_id, key in entries:
        if key is None:
            continue  # records without a key are not compacted
        previous = newest.get(key)
        if previous is not None:
            doomed.append(previous)
        newest[key] = entry_id
    return doomed


def retention_floor(checkpoints: list[tuple[int, int]], now_ms: int, retention_ms: int) -> int | None:
    """Highest highwater recorded at or before `now - retention` (offsets below it may go). Pure."""
    cutoff = now_ms - retention_ms
    eligible = [highwater for at_ms, highwater in checkpoints if at_ms <= cutoff]
    return max(eligible) if eligible else None


@dataclass
class JanitorStats:
    compacted: int = 0
    trimmed: int = 0
    passes: int = 0


async def compact_partition(client: aioredis.Redis, keys: KeySpace, tp: TP, keep_tail: int) -> int:
    """XDEL superseded changelog entries below `highwater - keep_tail`; returns how many were deleted.

    A superseded entry is never a partition's last one, so Recovery's `highwater - 1` always exists."""
    stream = keys.stream(tp.topic, tp.partition)
    highwater = int(await client.get(keys.counter(tp.topic, tp.partition)) or 0)
    watermark = highwater - keep_tail  # entries at or above it are never deleted
    if watermark <= 0:
        return 0
    seen: list[tuple[bytes, bytes | None]] = []
    start: Any = "-"
    while True:  # scan everything, so entries superseded inside the tail count too
        chunk: Any = await client.xrange(stream, start, "+", count=SCAN_CHUNK)
        if not chunk:
            break
        seen.extend((entry_id, fields.get(b"k")) for entry_id, fields in chunk)
        if len(chunk) < SCAN_CHUNK:
            break
        start = b"(" + chunk[-1][0]
    doomed = [entry_id for entry_id in superseded_ids(seen) if int(entry_id.partition(b"-")[0]) < watermark]
    for i in range(0, len(doomed), SCAN_CHUNK):
        await client.xdel(stream, *doomed[i:i + SCAN_CHUNK])
    return len(doomed)


async def trim_partition(client: aioredis.Redis, keys: KeySpace, tp: TP, retention_ms: int) -> int:
    """Record a checkpoint and drop entries older than `retention_ms`; returns how many were trimmed."""
    seconds, micros = await client.time()
    now_ms = seconds * 1000 + micros // 1000
    highwater = int(await client.get(keys.counter(tp.topic, tp.partition)) or 0)
    ckey = keys.checkpoints(tp.topic, tp.partition)
    await client.zadd(ckey, {str(highwater): now_ms})
    raw: Any = await client.zrange(ckey, 0, -1, withscores=True)
    floor = retention_floor([(int(score), int(member)) for member, score in raw], now_ms, retention_ms)
    if floor is None or floor <= 0:
        return 0
    trimmed = int(await client.xtrim(keys.stream(tp.topic, tp.partition), minid=floor, approximate=False))
    await client.zremrangebyscore(ckey, "-inf", now_ms - retention_ms - 1)
    await client.zadd(ckey, {str(floor): now_ms - retention_ms})  # keep the floor reachable next time
    return trimmed


class Janitor:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.stats = JanitorStats()

    async def run(self, assignment: Callable[[], set[TP]]) -> None:
        interval = self.transport.options.janitor_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep(self._owned(assignment()))
            except Exception as exc:  # the janitor must never take a worker down
                log.warning("janitor pass failed: %r", exc)

    def _owned(self, assigned: set[TP]) -> set[TP]:
        try:
            actives = self.transport.app.assignor.assigned_actives()
        except Exception:
            return assigned
        return {tp for tp in assigned if tp in actives}

    async def sweep(self, tps: Iterable[TP]) -> JanitorStats:
        transport = self.transport
        client = transport.client
        options = transport.options
        changelogs = transport.changelog_topics()
        for tp in sorted(tps):
            config = await transport.registry.config(client, tp.topic)
            if config.compacting or tp.topic in changelogs:
                self.stats.compacted += await compact_partition(client, transport.keys, tp,
                                                                options.compact_keep_tail)
            else:
                retention_ms = config.retention_ms or options.retention_ms
                if retention_ms > 0:
                    self.stats.trimmed += await trim_partition(client, transport.keys, tp, retention_ms)
        self.stats.passes += 1
        return self.stats
