"""The live-update stream: announce appends, tail yields in order with increasing ids."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from stream_app import live


async def test_announce_then_tail_in_order(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    run = {"type": "run", "run_id": "r0", "status": "running", "success_count": 0, "fail_count": 0,
           "validator_count": 3}
    before = await live.announce(redis_client, redis_prefix, run)
    received: list[tuple[str, dict]] = []

    async def consume() -> None:
        async for entry_id, event in live.tail(redis_client, redis_prefix, before, block_ms=200):
            received.append((entry_id, event))
            if len(received) == 2:
                return

    task = asyncio.create_task(consume())
    first = await live.announce(redis_client, redis_prefix,
                                {"type": "scores", "run_id": "r0", "epoch": 7, "validators": ["A", "B"]})
    await redis_client.xadd(live.stream_key(redis_prefix), {"junk": "1"})  # not ours: skipped
    rug = {"type": "commission", "vote_pubkey": "A", "epoch": 7, "kind": "rug", "old_commission": 5,
           "new_commission": 100}
    second = await live.announce(redis_client, redis_prefix, rug)
    await asyncio.wait_for(task, 5)
    assert [r[0] for r in received] == [first, second]
    assert received[0][1]["validators"] == ["A", "B"]
    assert received[1][1]["kind"] == "rug"
    assert tuple(map(int, first.split("-"))) < tuple(map(int, second.split("-")))


async def test_tail_from_now_skips_history(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    old = {"type": "scores", "run_id": "old", "epoch": 1, "validators": []}
    await live.announce(redis_client, redis_prefix, old)
    gen = live.tail(redis_client, redis_prefix, block_ms=100)
    nxt = asyncio.ensure_future(gen.__anext__())
    await asyncio.sleep(0.05)
    new = {"type": "scores", "run_id": "new", "epoch": 2, "validators": []}
    await live.announce(redis_client, redis_prefix, new)
    _, event = await asyncio.wait_for(nxt, 5)
    assert event["run_id"] == "new"
    await gen.aclose()


async def test_unknown_type_rejected(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    with pytest.raises(ValueError, match="unknown live event type"):
        await live.announce(redis_client, redis_prefix, {"type": "nope"})
    assert await live.latest_id(redis_client, redis_prefix) == "0-0"
