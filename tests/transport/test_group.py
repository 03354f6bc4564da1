"""Group coordination scripts and a stuck member, on real Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from stream_app.transport import scripts
from stream_app.transport.keys import GroupKeys, KeySpace

from .workers import WorkerPool


async def beat(client: aioredis.Redis, group: GroupKeys, member: str, session_ms: int, mode: int = 0) -> list[int]:
    result = await scripts.run(client, "heartbeat", [group.state, group.members], [member, session_ms, mode])
    return [int(x) for x in result]


async def test_expired_member_is_evicted_on_redis_clock_and_told_to_rejoin(
    redis_client: aioredis.Redis, keys: KeySpace
) -> None:
    group = keys.group("g")
    assert (await beat(redis_client, group, "a", 200, mode=1))[:2] == [1, 1]
    assert (await beat(redis_client, group, "b", 5000, mode=1))[:2] == [1, 2]
    await asyncio.sleep(0.3)
    status, epoch, _ = await beat(redis_client, group, "b", 5000)
    assert (status, epoch) == (1, 3)  # b's beat evicted a and bumped the epoch
    members: Any = await redis_client.zrange(group.members, 0, -1)
    assert members == [b"b"]
    assert (await beat(redis_client, group, "a", 200))[0] == -1  # the zombie learns it must re-register


async def test_join_is_refused_for_a_moved_epoch_or_a_non_member(redis_client: aioredis.Redis,
                                                                  keys: KeySpace) -> None:
    group = keys.group("g")
    await beat(redis_client, group, "a", 5000, mode=1)
    join = [group.state, group.members, group.join(1)]
    assert await scripts.run(redis_client, "join", join, [1, "a", b"meta"]) == 1
    assert await scripts.run(redis_client, "join", join, [0, "a", b"meta"]) == 0
    assert await scripts.run(redis_client, "join", join, [1, "ghost", b"meta"]) == -1
    assert await scripts.run(redis_client, "leave", [group.state, group.members], ["a"]) == 2


@pytest.mark.slow
@pytest.mark.timeout(90)
# member ids start with the hostname: "~" sorts after any of them, "!" before (so it would be the leader)
@pytest.mark.parametrize("stuck_id", ["~stuck", "!stuck"], ids=["stuck-follower", "stuck-leader"])
async def test_member_that_never_joins_cannot_stall_the_group(
    redis_url: str, redis_prefix: str, redis_client: aioredis.Redis, tmp_path: Path, stuck_id: str
) -> None:
    group = KeySpace(redis_prefix).group("count")
    stop = asyncio.Event()

    async def stuck_member() -> None:  # alive (heartbeats) but never joins a rebalance
        await beat(redis_client, group, stuck_id, 3000, mode=1)
        while not stop.is_set():
            await beat(redis_client, group, stuck_id, 3000)
            await asyncio.sleep(0.3)

    stuck = asyncio.create_task(stuck_member())
    pool = WorkerPool(f"{redis_url}?prefix={redis_prefix}&janitor_interval=0", tmp_path, session_timeout=3.0)
    try:
        await asyncio.sleep(0.5)
        worker = pool.start()
        deadline = time.monotonic() + 60
        dump = None
        while time.monotonic() < deadline:
            dump = pool.dump(worker)
            if dump and len(dump["actives"]) == 4:
                break
            await asyncio.sleep(0.3)
        assert dump and len(dump["actives"]) == 4, pool.output()
        members: Any = await redis_client.zrange(group.members, 0, -1)
        assert stuck_id.encode() not in members
        assert ("rebalance timeout" if stuck_id == "~stuck" else "assigning it from member") in pool.output()
    finally:
        stop.set()
        await stuck
        pool.stop_all()
