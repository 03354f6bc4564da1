"""The agent's StateTable writes the changelog records and store values that `table[key] = value` writes."""

from __future__ import annotations

import asyncio
import weakref
from types import SimpleNamespace
from typing import Any

import faust
import redis.asyncio as aioredis
from faust.streams import _current_event

from stream_app.state_table import StateTable
from stream_app.transport.keys import KeySpace
from stream_app.transport.partitioner import partition_for_key


class _Event:
    """Stands for a stream event of a record being processed: what the table reads of it."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = SimpleNamespace(topic=topic, partition=partition)


async def test_state_table_matches_the_tables_own_writes(app: faust.App, producer: Any, redis_client: aioredis.Redis,
                                                         keys: KeySpace) -> None:
    app.topic("records", partitions=4, key_type=bytes, value_type=bytes)
    table = app.Table("state", default=None, partitions=4, key_type=bytes, value_type=bytes)
    await table.changelog_topic.maybe_declare()
    changelog = table.changelog_topic.get_topic_name()
    fast = StateTable(table)
    event = _Event("records", 2)
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        table[b"vote-a"] = b'{"n":1}'  # Faust's own path: the partition of the current event
        fast.set(b"vote-b", b'{"n":1}', event)
        assert len(producer._queue) == 2  # both queued at once (Faust's path through our send_soon)
        fast.set(b"vote-a", b'{"n":2}', event)
    finally:
        _current_event.reset(token)
    await asyncio.wait_for(producer.flush(), 20)

    assert [fast.get(k) for k in (b"vote-a", b"vote-b", b"vote-c")] == [b'{"n":2}', b'{"n":1}', None]
    assert [table.get(k) for k in (b"vote-a", b"vote-b", b"vote-c")] == [b'{"n":2}', b'{"n":1}', None]
    entries: Any = await redis_client.xrange(keys.stream(changelog, 2), "-", "+")
    fields = [{k: v for k, v in entry.items() if k != b"ts"} for _, entry in entries]
    assert fields == [{b"k": b"vote-a", b"v": b'{"n":1}'}, {b"k": b"vote-b", b"v": b'{"n":1}'},
                      {b"k": b"vote-a", b"v": b'{"n":2}'}]
    for partition in (0, 1, 3):
        assert await redis_client.xlen(keys.stream(changelog, partition)) == 0


async def test_state_table_falls_back_to_the_table_while_fausts_buffer_holds_records(
        app: faust.App, producer: Any, redis_client: aioredis.Redis, keys: KeySpace) -> None:
    table = app.Table("state2", default=None, partitions=4, key_type=bytes, value_type=bytes)
    changelog = table.changelog_topic.get_topic_name()
    fast = StateTable(table)
    partition = partition_for_key(b"vote-a", 4)
    event = _Event(changelog, partition)
    # not declared yet: the record needs a registry round trip, so it waits in Faust's buffer, and must stay
    # ahead of the next write of the same key: StateTable then goes through the table (and that buffer)
    table.changelog_topic.send_soon(key=b"vote-a", value=b"old")
    assert producer.buffer.size == 1
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        fast.set(b"vote-a", b"new", event)
    finally:
        _current_event.reset(token)
    assert producer.buffer.size == 2
    await asyncio.wait_for(producer.flush(), 20)
    entries: Any = await redis_client.xrange(keys.stream(changelog, partition), "-", "+")
    assert [entry[b"v"] for _, entry in entries] == [b"old", b"new"]
    assert fast.get(b"vote-a") == b"new"
