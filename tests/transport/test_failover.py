"""Real worker processes on a private Redis: SIGKILL + restart, SIGSTOP past the session timeout, cold rebuild.

Asserts at-least-once (every produced record processed), that each live worker's table equals its
changelog, and that a cold single worker rebuilds the table exactly. Duplicates are counted and printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from stream_app.embedded import EmbeddedRedis
from stream_app.transport.keys import KeySpace

from .helpers import changelog_state, committed, highwaters, produce
from .workers import WorkerPool, duplicates, free_port

PARTITIONS = 4
CHANGELOG = "count-counts-changelog"
PREFIX = "ft"
KEYS = KeySpace(PREFIX)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[tuple[str, aioredis.Redis]]:
    server = EmbeddedRedis(root=tmp_path / "redis-root", port=free_port(), appendonly=False)
    url = server.start()
    client = aioredis.from_url(url)
    yield url, client
    await client.aclose()
    server.stop()


async def wait_for(predicate: Any, within: float, what: str, pool: WorkerPool) -> None:
    deadline = time.monotonic() + within
    reason = ""
    while time.monotonic() < deadline:
        ok = await predicate()
        ok, reason = ok if isinstance(ok, tuple) else (ok, "")
        if ok:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}: {reason}\n{pool.output()}")


async def produce_paced(client: aioredis.Redis, total: int, rate: int, seq0: int = 0) -> None:
    chunk = max(1, rate // 10)
    for start in range(seq0, seq0 + total, chunk):
        records = [(f"k{i % 40}".encode(), str(i).encode()) for i in range(start, min(start + chunk, seq0 + total))]
        await produce(client, KEYS, "events", PARTITIONS, records)
        await asyncio.sleep(0.1)


async def caught_up(client: aioredis.Redis) -> bool:
    done = await committed(client, KEYS, "count")
    ends = await highwaters(client, KEYS, "events", PARTITIONS)
    return all(done.get(tp) == end for tp, end in ends.items())


def tables_match(pool: WorkerPool, procs: list[Any], state: dict[str, int]) -> tuple[bool, str]:
    covered: set[int] = set()
    for proc in procs:
        dump = pool.dump(proc)
        if dump is None:
            return False, f"no dump from {proc.pid}"
        actives = set(dump["actives"])
        covered |= actives
        expected = {k: v for k, v in state.items() if _partition(k) in actives}
        if dump["counts"] != expected:
            diff = {k: (v, expected.get(k)) for k, v in dump["counts"].items() if expected.get(k) != v}
            diff.update({k: (None, v) for k, v in expected.items() if k not in dump["counts"]})
            return False, f"worker {proc.pid} gen {dump['generation']} {sorted(actives)} differs: {diff}"
    if covered != set(range(PARTITIONS)):
        return False, f"active partitions {sorted(covered)} do not cover the topic"
    return True, ""


def _partition(key: str) -> int:
    from stream_app.transport.partitioner import partition_for_key

    return partition_for_key(key.encode(), PARTITIONS)  # the source record's key picks the partition


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_kill_stop_restart_loses_nothing_and_tables_match_changelogs(
    private_redis: tuple[str, aioredis.Redis], tmp_path: Path
) -> None:
    url, client = private_redis
    out = tmp_path / "out"
    out.mkdir()
    pool = WorkerPool(f"{url}?prefix={PREFIX}&janitor_interval=2&compact_keep_tail=50", out, session_timeout=3.0)
    try:
        a, b = pool.start(), pool.start()

        async def both_assigned() -> bool:
            da, db = pool.dump(a), pool.dump(b)
            return bool(da and db and da["generation"] == db["generation"] and da["actives"] and db["actives"])

        await wait_for(both_assigned, 40, "two workers sharing the partitions", pool)
        total = 12000
        producer = asyncio.create_task(produce_paced(client, total, rate=1200))
        await asyncio.sleep(2.5)
        os.kill(b.pid, signal.SIGKILL)  # mid-stream
        await asyncio.sleep(pool.session_timeout + 1.0)
        c = pool.start()  # "B restarted"
        await asyncio.sleep(4.0)
        os.kill(a.pid, signal.SIGSTOP)  # frozen past the session timeout: becomes a zombie
        await asyncio.sleep(pool.session_timeout + 2.0)
        os.kill(a.pid, signal.SIGCONT)
        await producer

        await wait_for(lambda: caught_up(client), 40, "committed offsets to reach the highwaters", pool)
        state: dict[str, int] = {}

        async def live_tables_match() -> tuple[bool, str]:
            nonlocal state
            state = await changelog_state(client, KEYS, CHANGELOG, PARTITIONS)
            return tables_match(pool, [a, c], state)

        await wait_for(live_tables_match, 30, "live tables to equal their changelogs", pool)

        rows = pool.processed()
        seen = {seq for _, _, _, seq in rows}
        missing = set(range(total)) - seen
        assert not missing, f"{len(missing)} records never processed, e.g. {sorted(missing)[:10]}"
        expected = Counter(f"k{i % 40}" for i in range(total))
        lost_keys = {k: (state.get(k, 0), n) for k, n in expected.items() if state.get(k, 0) < n}
        assert not lost_keys, f"changelog counts below the produced counts: {lost_keys}"
        dups = duplicates(rows)
        excess = sum(state.values()) - total
        print(f"\nfailover: produced={total} processed={len(rows)} duplicates={dups} "
              f"table_excess={excess} worker_outputs={out}")
        assert excess >= 0

        changelog_ends = await highwaters(client, KEYS, CHANGELOG, PARTITIONS)
        stored = sum([await client.xlen(KEYS.stream(CHANGELOG, p)) for p in range(PARTITIONS)])
        assert stored < sum(changelog_ends.values()), "the janitor should have compacted the changelog"
        print(f"changelog entries kept after compaction: {stored} of {sum(changelog_ends.values())}")

        pool.stop_all()
        cold = pool.start()  # rebuilds from the compacted (gapped) changelog streams

        async def cold_rebuilt() -> bool:
            dump = pool.dump(cold)
            return bool(dump and len(dump["actives"]) == PARTITIONS and dump["counts"] == state)

        await wait_for(cold_rebuilt, 40, "a cold single worker to rebuild the table from the changelog", pool)
        dump = pool.dump(cold)
        assert dump and dump["lean_applied"] > 0, "the rebuild should have gone through the lean recovery path"
    finally:
        pool.stop_all()
