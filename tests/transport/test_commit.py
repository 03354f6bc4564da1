"""Committed offsets are fenced by generation and partition owner (real Redis, the commit Lua script)."""

from __future__ import annotations

from typing import Any

import faust
import redis.asyncio as aioredis
from faust.types import TP

from stream_app.transport.coordinator import RegistryCluster, sole_owners
from stream_app.transport.keys import KeySpace, tp_field

from .helpers import committed

TP0, TP1 = TP("events", 0), TP("events", 1)


async def setup_group(redis_client: aioredis.Redis, app: faust.App, generation: int, owners: dict[TP, str]) -> Any:
    group = app.transport.group_keys  # type: ignore[attr-defined]
    await redis_client.hset(group.state, mapping={"epoch": generation, "generation": generation})
    await redis_client.hset(group.owners, mapping={tp_field(tp): m for tp, m in owners.items()})
    coordinator = app.consumer.coordinator  # type: ignore[attr-defined]
    coordinator.member_id = "me"
    coordinator.generation = generation
    return coordinator


async def test_owner_in_current_generation_commits(app: faust.App, redis_client: aioredis.Redis,
                                                    keys: KeySpace) -> None:
    coordinator = await setup_group(redis_client, app, 3, {TP0: "me", TP1: "me"})
    assert await coordinator.commit({TP0: 10, TP1: 4}) is True
    assert await committed(redis_client, keys, app.conf.id) == {"events:0": 10, "events:1": 4}
    await app.transport.close_clients()  # type: ignore[attr-defined]


async def test_stale_generation_is_rejected_and_asks_to_rejoin(app: faust.App, redis_client: aioredis.Redis,
                                                               keys: KeySpace) -> None:
    coordinator = await setup_group(redis_client, app, 3, {TP0: "me"})
    await redis_client.hset(app.transport.group_keys.state, "generation", 4)  # type: ignore[attr-defined]
    assert await coordinator.commit({TP0: 10}) is False
    assert coordinator.fenced_commits == 1
    assert coordinator._rebalance_needed.is_set()
    assert await committed(redis_client, keys, app.conf.id) == {}
    await app.transport.close_clients()  # type: ignore[attr-defined]


async def test_non_owner_is_rejected_without_partial_writes(app: faust.App, redis_client: aioredis.Redis,
                                                            keys: KeySpace) -> None:
    coordinator = await setup_group(redis_client, app, 3, {TP0: "me", TP1: "someone-else"})
    assert await coordinator.commit({TP0: 10, TP1: 4}) is False
    assert await committed(redis_client, keys, app.conf.id) == {}
    assert await app.consumer._commit({TP0: 10}) is True  # the consumer path, own partition only
    await app.transport.close_clients()  # type: ignore[attr-defined]


def test_sole_owners_skips_partitions_shared_by_standbys() -> None:
    a = [TP("src", 0), TP("log", 0), TP("log", 1)]
    b = [TP("src", 1), TP("log", 1), TP("log", 0)]
    c = [TP("src", 2), TP("log", 2)]
    assert sole_owners({"a": a, "b": b, "c": c}) == {"src:0": "a", "src:1": "b", "src:2": "c", "log:2": "c"}


def test_registry_cluster_answers_like_kafka_metadata() -> None:
    cluster = RegistryCluster({"t": 3})
    assert cluster.partitions_for_topic("t") == {0, 1, 2}
    assert cluster.partitions_for_topic("missing") is None
