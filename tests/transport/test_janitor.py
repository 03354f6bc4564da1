"""Retention and compaction: pure rules with properties, and their effect on real Redis streams."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import redis.asyncio as aioredis
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from stream_app.transport.janitor import compact_partition, retention_floor, superseded_ids, trim_partition
from stream_app.transport.keys import KeySpace

from .helpers import changelog_state, produce

keys_strategy = st.lists(st.one_of(st.none(), st.sampled_from([b"a", b"b", b"c", b"d"])), max_size=60)


@given(keys_strategy)
def test_compaction_keeps_exactly_the_newest_entry_per_key(log_keys: list[bytes | None]) -> None:
    entries = [(str(i).encode(), k) for i, k in enumerate(log_keys)]
    doomed = set(superseded_ids(entries))
    survivors = [(i, k) for i, k in entries if i not in doomed]
    keyed = [k for _, k in survivors if k is not None]
    assert len(keyed) == len(set(keyed))  # one entry per key survives
    assert {k for k in log_keys if k is not None} == set(keyed)  # and no key disappears
    last = {k: i for i, k in entries if k is not None}
    assert all(last[k] == i for i, k in survivors if k is not None)  # the survivor is the newest one
    if entries:
        assert entries[-1][0] not in doomed  # the last entry always survives


def test_compaction_worked_example() -> None:
    entries = [(b"0-1", b"a"), (b"1-1", b"b"), (b"2-1", b"a"), (b"3-1", None), (b"4-1", b"a")]
    assert superseded_ids(entries) == [b"0-1", b"2-1"]


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10**6)), max_size=30),
       st.integers(0, 20_000), st.integers(1, 5000))
def test_retention_floor_only_uses_old_enough_checkpoints(points: list[tuple[int, int]], now: int,
                                                          retention: int) -> None:
    floor = retention_floor(points, now, retention)
    old = [hw for at, hw in points if at <= now - retention]
    assert floor == (max(old) if old else None)


async def test_compaction_on_redis_keeps_last_entry_and_table_state(redis_client: aioredis.Redis,
                                                                     keys: KeySpace) -> None:
    records = [(f'"k{i % 5}"'.encode(), str(i).encode()) for i in range(300)]
    await produce(redis_client, keys, "tbl-changelog", 1, records)
    before = await changelog_state(redis_client, keys, "tbl-changelog", 1)
    deleted = await compact_partition(redis_client, keys, TP("tbl-changelog", 0), keep_tail=0)
    after = await changelog_state(redis_client, keys, "tbl-changelog", 1)
    assert after == before
    assert deleted == 295
    assert await redis_client.xlen(keys.stream("tbl-changelog", 0)) == 5
    last: Any = await redis_client.xrevrange(keys.stream("tbl-changelog", 0), count=1)
    assert last[0][0] == b"299-1"  # Recovery still finds highwater - 1


async def test_time_retention_trims_what_is_older_than_the_window(redis_client: aioredis.Redis,
                                                                   keys: KeySpace) -> None:
    tp = TP("ret", 0)
    await produce(redis_client, keys, "ret", 1, [(b"k", b"old")] * 100)
    assert await trim_partition(redis_client, keys, tp, retention_ms=300) == 0  # first checkpoint: nothing old
    await asyncio.sleep(0.4)
    await produce(redis_client, keys, "ret", 1, [(b"k", b"new")] * 10)
    assert await trim_partition(redis_client, keys, tp, retention_ms=300) == 100
    entries: Any = await redis_client.xrange(keys.stream("ret", 0), "-", "+")
    assert [f[b"v"] for _, f in entries] == [b"new"] * 10


async def test_memory_stays_bounded_under_a_steady_stream(redis_url: str, redis_prefix: str,
                                                           redis_client: aioredis.Redis, keys: KeySpace) -> None:
    app = faust.App(f"bounded-{redis_prefix}", broker=f"{redis_url}?prefix={redis_prefix}&maxlen=500",
                    topic_partitions=1)
    producer: Any = app.producer
    await producer.start()
    try:
        lengths = []
        for _ in range(10):
            for i in range(1000):
                await producer.send("steady", None, str(i).encode(), 0, None, None)
            await producer.flush()
            lengths.append(await redis_client.xlen(keys.stream("steady", 0)))
        assert max(lengths) < 500 + 200  # approximate MAXLEN trims whole nodes (100 entries each)
        assert int(await redis_client.get(keys.counter("steady", 0))) == 10_000  # offsets keep counting
    finally:
        await producer.stop()
        await app.transport.close_clients()  # type: ignore[attr-defined]
