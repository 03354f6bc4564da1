"""Lean recovery (`stream_app/transport/recovery.py`) rebuilds exactly what Faust's own per-event Recovery does.

One worker counts keys into a table; then cold single workers rebuild it from the changelog streams, once
with `lean_recovery=false&lean_delivery=false` (upstream's Conductor and `_slurp_changelogs` paths) and once
with the defaults.
Both must equal the changelog; the default one must have applied every changelog entry through the bulk path.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from .helpers import changelog_state, highwaters
from .test_failover import CHANGELOG, KEYS, PARTITIONS, PREFIX, caught_up, private_redis, produce_paced, wait_for
from .workers import WorkerPool

__all__ = ["private_redis"]  # the fixture, re-used


def _rebuilt(pool: WorkerPool, proc: object, state: dict[str, int]) -> bool:
    dump = pool.dump(proc)  # type: ignore[arg-type]
    return bool(dump and len(dump["actives"]) == PARTITIONS and dump["counts"] == state)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_cold_rebuild_equal_with_and_without_lean_recovery(
    private_redis: tuple[str, aioredis.Redis], tmp_path: Path
) -> None:
    url, client = private_redis
    base = f"{url}?prefix={PREFIX}&janitor_interval=0"
    runs: dict[str, WorkerPool] = {}
    for name in ("writer", "upstream", "lean"):
        (tmp_path / name).mkdir()
    writer = WorkerPool(base, tmp_path / "writer", session_timeout=3.0)
    try:
        proc = writer.start()

        async def assigned() -> bool:
            dump = writer.dump(proc)
            return bool(dump and len(dump["actives"]) == PARTITIONS)

        await wait_for(assigned, 40, "the writer to own every partition", writer)
        await produce_paced(client, 6000, rate=3000)
        await wait_for(lambda: caught_up(client), 40, "committed offsets to reach the highwaters", writer)
        state: dict[str, int] = {}

        async def writer_matches() -> bool:
            nonlocal state
            state = await changelog_state(client, KEYS, CHANGELOG, PARTITIONS)
            return _rebuilt(writer, proc, state)

        await wait_for(writer_matches, 30, "the writer's table to equal its changelog", writer)
        assert sum(state.values()) >= 6000
        dump = writer.dump(proc)
        assert dump and dump["lean_delivered"] > 0, "records should have reached the agent by lean delivery"
        writer.stop_all()

        for name, options in (("upstream", "&lean_recovery=false&lean_delivery=false"), ("lean", "")):
            pool = runs[name] = WorkerPool(base + options, tmp_path / name, session_timeout=3.0)
            cold = pool.start()

            async def rebuilt(pool: WorkerPool = pool, cold: object = cold) -> bool:
                return _rebuilt(pool, cold, state)

            await wait_for(rebuilt, 40, f"a cold worker ({name}) to rebuild the table", pool)
            dump = pool.dump(cold)
            assert dump is not None
            if name == "lean":  # every changelog entry applied once, in bulk
                entries = sum((await highwaters(client, KEYS, CHANGELOG, PARTITIONS)).values())
                assert dump["lean_applied"] == entries
            else:
                assert dump["lean_applied"] == 0
            pool.stop_all()
            await asyncio.sleep(0)
    finally:
        writer.stop_all()
        for pool in runs.values():
            pool.stop_all()


async def test_lean_decoder_gives_the_channels_own_events_and_shares_only_immutable_values() -> None:
    import faust
    from faust.types import TP, ConsumerMessage

    from stream_app.transport.recovery import _Decoder, _stock_decode

    class Point(faust.Record):
        x: int

    app = faust.App("lean-decode", broker="redis://127.0.0.1:6379/0", store="memory://")
    counts = app.Table("counts", default=int, partitions=4)
    points = app.Table("points", partitions=4, value_type=Point)
    for table, raw_values in ((counts, [b"1", b"1", b"7", None]), (points, [b'{"x": 1}', b'{"x": 1}', None])):
        channel = table.changelog_topic
        assert _stock_decode(app, channel)
        decoder = _Decoder(app, channel.schema)
        tp = TP(channel.get_topic_name(), 0)
        for offset, raw in enumerate(raw_values):
            message = ConsumerMessage(tp.topic, 0, offset, 1.0, 0, [], b'"k"', raw, None, tp=tp)
            ours = decoder(message, app.conf.Event)
            theirs = await channel.decode(message, propagate=True)
            assert (ours.key, ours.value, ours.message) == (theirs.key, theirs.value, theirs.message)
            assert type(ours) is type(theirs)
        assert decoder.keys == {b'"k"': "k"}
        assert set(decoder.values) == ({b"1", b"7"} if table is counts else set())  # records are never shared

    class OwnDecode(type(counts.changelog_topic)):  # type: ignore[misc]
        def _compile_decode(self) -> None:
            super()._compile_decode()

    assert not _stock_decode(app, OwnDecode(app, topics=["x"]))


async def test_lean_decoder_passes_raw_bytes_through_as_faust_decodes_them() -> None:
    import faust
    from faust.types import TP, ConsumerMessage

    from stream_app.transport.recovery import _Decoder

    app = faust.App("lean-raw", broker="redis://127.0.0.1:6379/0", store="memory://", key_serializer="raw",
                    value_serializer="raw")
    raw_topic = app.topic("records", key_type=bytes, value_type=bytes)
    json_topic = app.topic("scores", key_type=bytes, value_type=bytes, value_serializer="json")
    state = app.Table("state", default=None, partitions=4, key_type=bytes, value_type=bytes)
    for channel, passes in ((raw_topic, True), (state.changelog_topic, True), (json_topic, False)):
        decoder = _Decoder(app, channel.schema, cache=False)
        assert (decoder.raw_keys and decoder.raw_values) is passes
        tp = TP(channel.get_topic_name(), 0)
        for key, value in ((b"vote-1", b'{"a": 1}'), (None, b'"x"'), (b"k", b"[]")):
            message = ConsumerMessage(tp.topic, 0, 0, 1.0, 0, [], key, value, None, tp=tp)
            ours = decoder(message, app.conf.Event)
            theirs = await channel.decode(message, propagate=True)
            assert (ours.key, ours.value, ours.message) == (theirs.key, theirs.value, theirs.message)
            assert type(ours) is type(theirs)
