"""What the Redis Streams transport holds right now, read straight from its keys (see transport/keys.py).

Per topic-partition: highwater (next offset), entries retained, and per consumer group the committed
offset, lag, owner and the time of the last committed record; per group: members with their heartbeat
expiry, epoch, generation and leader. Used by `solstake stream monitor` and the worker's Prometheus
collector. Read-only: a handful of pipelined reads, safe against a live system.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream_app.transport.keys import KeySpace, parse_tp_field

log = logging.getLogger(__name__)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class PartitionStats:
    topic: str
    partition: int
    highwater: int  # next offset to be written
    retained: int  # entries still in the stream (after retention / compaction)


@dataclass(frozen=True)
class GroupPartition:
    topic: str
    partition: int
    committed: int | None  # next offset the group will read; None = never committed
    lag: int | None  # None for changelog / internal topics, which are read but never committed
    owner: str | None
    last_commit_record_ms: int | None  # timestamp of the last committed record, ms


@dataclass(frozen=True)
class Member:
    member_id: str
    expires_in: float  # seconds until its heartbeat expires (negative = already expired)


@dataclass(frozen=True)
class GroupStats:
    group: str
    epoch: int
    generation: int
    leader: str | None
    members: tuple[Member, ...]
    partitions: tuple[GroupPartition, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions if p.lag is not None)


@dataclass(frozen=True)
class StreamSnapshot:
    prefix: str
    taken_at: float
    partitions: tuple[PartitionStats, ...]
    groups: tuple[GroupStats, ...] = field(default=())
    memory_used: int | None = None  # Redis used_memory, bytes (streams live in RAM)
    memory_max: int | None = None  # Redis maxmemory, bytes (0 = no limit)

    def topics(self) -> dict[str, list[PartitionStats]]:
        out: dict[str, list[PartitionStats]] = {}
        for p in self.partitions:
            out.setdefault(p.topic, []).append(p)
        return out


def is_internal(topic: str) -> bool:
    """Faust's table changelogs and its leader-election topic: never committed by a consumer group."""
    return topic.endswith("-changelog") or topic.endswith("__assignor-__leader")


async def _group_ids(redis: aioredis.Redis, keys: KeySpace) -> list[str]:
    pattern = f"{keys.prefix}:g:{{*}}:state"
    found: set[str] = set()
    async for key in redis.scan_iter(match=pattern, count=500):
        text = _text(key)
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            found.add(text[start + 1:end])
    return sorted(found)


async def read_snapshot(redis: aioredis.Redis, prefix: str) -> StreamSnapshot:
    keys = KeySpace(prefix)
    raw_topics = await redis.hgetall(keys.topics)
    tps = sorted((_text(t), p) for t, n in raw_topics.items() for p in range(int(n)))
    async with redis.pipeline(transaction=False) as pipe:
        for topic, partition in tps:
            pipe.get(keys.counter(topic, partition))
            pipe.xlen(keys.stream(topic, partition))
        pipe.time()
        pipe.info("memory")
        results = await pipe.execute()
    memory = results.pop()
    server_now_ms = int(results[-1][0]) * 1000 + int(results[-1][1]) // 1000
    partitions = tuple(
        PartitionStats(topic, partition, int(results[2 * i] or 0), int(results[2 * i + 1] or 0))
        for i, (topic, partition) in enumerate(tps)
    )
    highwaters = {(p.topic, p.partition): p.highwater for p in partitions}
    groups = [await _read_group(redis, keys, gid, highwaters, server_now_ms) for gid in await _group_ids(redis, keys)]
    return StreamSnapshot(prefix, time.time(), partitions, tuple(groups), _int(memory.get("used_memory")),
                          _int(memory.get("maxmemory")))


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | str | bytes) and str(value).isdigit() else None


async def _read_group(redis: aioredis.Redis, keys: KeySpace, group_id: str,
                      highwaters: dict[tuple[str, int], int], server_now_ms: int) -> GroupStats:
    gk = keys.group(group_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(gk.state)
        pipe.zrange(gk.members, 0, -1, withscores=True)
        pipe.hgetall(gk.offsets)
        pipe.hgetall(gk.owners)
        state, members, offsets, owners = await pipe.execute()
    state = {_text(k): _text(v) for k, v in state.items()}
    committed = {parse_tp_field(k): int(v) for k, v in offsets.items()}
    owner_of = {parse_tp_field(k): _text(v) for k, v in owners.items()}
    tps = sorted(set(committed) | set(owner_of))
    last_ts = await _record_times(redis, keys, [(tp.topic, tp.partition, committed[tp] - 1)
                                                for tp in tps if committed.get(tp, 0) > 0])
    parts = []
    for tp in tps:
        hw = highwaters.get((tp.topic, tp.partition), 0)
        done = committed.get(tp)
        lag = None if is_internal(tp.topic) and done is None else max(0, hw - (done or 0))
        parts.append(GroupPartition(
            tp.topic, tp.partition, done, lag, owner_of.get(tp),
            last_ts.get((tp.topic, tp.partition)),
        ))
    return GroupStats(
        group=group_id,
        epoch=int(state.get("epoch") or 0),
        generation=int(state.get("generation") or -1),
        leader=state.get("leader") or None,
        members=tuple(Member(_text(m), (float(score) - server_now_ms) / 1000.0) for m, score in members),
        partitions=tuple(parts),
    )


async def _record_times(redis: aioredis.Redis, keys: KeySpace,
                        wanted: list[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
    """Timestamp (ms) of the record at each (topic, partition, offset), if it is still retained."""
    if not wanted:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for topic, partition, offset in wanted:
            entry_id = f"{offset}-1"
            pipe.xrange(keys.stream(topic, partition), entry_id, entry_id, count=1)
        results = await pipe.execute()
    out: dict[tuple[str, int], int] = {}
    for (topic, partition, _offset), entries in zip(wanted, results, strict=True):
        if entries:
            fields = {_text(k): v for k, v in entries[0][1].items()}
            ts = fields.get("ts")
            if ts is not None:
                out[(topic, partition)] = int(_text(ts))
    return out


class StreamCollector(Collector):
    """Prometheus view of the last `StreamSnapshot`; `run()` refreshes it in the background."""

    def __init__(self) -> None:
        self.snapshot: StreamSnapshot | None = None

    async def refresh(self, redis: aioredis.Redis, prefix: str, limit: float = 2.0) -> None:
        try:
            self.snapshot = await asyncio.wait_for(read_snapshot(redis, prefix), limit)
        except (TimeoutError, OSError, aioredis.RedisError) as exc:
            log.warning("stream metrics not refreshed: %s: %s", type(exc).__name__, exc)

    async def run(self, redis: aioredis.Redis, prefix: str, interval: float = 10.0) -> None:
        while True:
            await self.refresh(redis, prefix)
            await asyncio.sleep(interval)

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        backlog = GaugeMetricFamily(
            "solstake_stream_backlog_records",
            "Records retained in the Redis stream of each topic partition (what retention has not trimmed).",
            labels=["topic", "partition"])
        highwater = GaugeMetricFamily(
            "solstake_stream_highwater_offset",
            "Next offset to be written to each topic partition (records ever produced to it).",
            labels=["topic", "partition"])
        for p in snap.partitions:
            backlog.add_metric([p.topic, str(p.partition)], p.retained)
            highwater.add_metric([p.topic, str(p.partition)], p.highwater)
        lag = GaugeMetricFamily(
            "solstake_stream_lag_records",
            "Records produced to a topic partition but not yet committed by the consumer group.",
            labels=["group", "topic", "partition"])
        members = GaugeMetricFamily("solstake_stream_group_members",
                                    "Live members (unexpired heartbeats) of each consumer group.", labels=["group"])
        generation = GaugeMetricFamily("solstake_stream_group_generation",
                                       "Generation of each consumer group's current partition assignment "
                                       "(it increases by one or more on every rebalance).", labels=["group"])
        for g in snap.groups:
            members.add_metric([g.group], sum(1 for m in g.members if m.expires_in > 0))
            generation.add_metric([g.group], g.generation)
            for gp in g.partitions:
                if gp.lag is None:
                    continue
                lag.add_metric([g.group, gp.topic, str(gp.partition)], gp.lag)
        yield from (backlog, highwater, lag, members, generation)
        if snap.memory_used is not None:
            used = GaugeMetricFamily("solstake_redis_memory_used_bytes",
                                     "Memory Redis uses (streams, changelogs, caches all live in RAM).")
            used.add_metric([], snap.memory_used)
            yield used
        if snap.memory_max is not None:
            limit = GaugeMetricFamily("solstake_redis_memory_max_bytes",
                                      "Redis maxmemory setting in bytes (0 = unlimited).")
            limit.add_metric([], snap.memory_max)
            yield limit
        yield _age(snap.taken_at)


def _age(taken_at: float) -> GaugeMetricFamily:
    metric = GaugeMetricFamily("solstake_stream_stats_age_seconds",
                               "Seconds since the stream gauges above were read from Redis.")
    metric.add_metric([], max(0.0, time.time() - taken_at))
    return metric

