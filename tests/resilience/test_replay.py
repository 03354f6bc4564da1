"""Item 5: the same records replayed twice through a real worker. The group's committed offsets on
validator-records (the only topic the group consumes) are rewound to 0 while the worker is stopped, as after
lost commits, and a new worker consumes everything again; that is done twice.

Asserted: every table identical after each replay (all columns but `updated_at`), and no live event (the
source of GraphQL subscription events) from the replays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from stream_app import live
from stream_app.app import APP_ID, RECORDS_TOPIC
from stream_app.fetcher import request_fetch
from stream_app.settings import Settings
from stream_app.sources.simulator.server import start_simulator
from stream_app.stream_status import stream_status
from stream_app.transport.keys import KeySpace
from tests.resilience.helpers import finished_run, start_worker, table_state, wait_for, worker_env

VALIDATORS = 60
Rows = dict[str, list[tuple[str, ...]]]


@dataclass
class Replayed:
    before: Rows
    after: list[Rows]  # after replay 1, replay 2
    events_before: list[dict[str, object]]
    events_after: list[list[dict[str, object]]]  # new live events of replay 1, replay 2


async def _live_events(redis: aioredis.Redis, prefix: str) -> list[dict[str, object]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(live.stream_key(prefix))  # type: ignore[assignment]
    return [e for _id, f in entries if (e := live.decode_entry(f))]


async def replay_twice(settings: Settings, database_url: str, redis_url: str, redis: aioredis.Redis,
                       pool: asyncpg.Pool, tmp_path: Path, runs: int) -> Replayed:
    sim = await start_simulator(0, seed=752, validators=VALIDATORS, epoch_seconds=0)
    prefix = settings.redis_prefix
    env = worker_env(settings, database_url, redis_url, sim.url)
    procs = [start_worker("worker", env, tmp_path)]
    offsets_key = KeySpace(prefix).group(APP_ID).offsets

    async def drained() -> bool:
        status = await stream_status(redis, prefix)
        return status.members > 0 and status.lag == 0 and any(p.highwater for p in status.partitions)

    try:
        await wait_for(lambda: finished_run(pool, None), "the first run", 90, procs)
        for _ in range(runs - 1):
            run_id = await request_fetch(redis, prefix, trigger="cli", actor="replay")
            await wait_for(lambda r=run_id: finished_run(pool, r), "another run", 60, procs)  # type: ignore[misc]
        await wait_for(drained, "the group to commit everything", 30, procs)
        out = Replayed(await table_state(pool), [], await _live_events(redis, prefix), [])
        assert sum(len(rows) for rows in out.before.values()) > 2 * VALIDATORS

        for replay in (1, 2):
            assert procs[-1].stop(30) == 0, procs[-1].tail()
            status = await stream_status(redis, prefix)
            rewound = {f"{p.topic}:{p.partition}": 0 for p in status.partitions if p.topic == RECORDS_TOPIC}
            replayed = sum(p.highwater for p in status.partitions if p.topic == RECORDS_TOPIC)
            await redis.hset(offsets_key, mapping=rewound)  # type: ignore[arg-type]
            assert (await stream_status(redis, prefix)).lag == replayed >= runs * VALIDATORS
            seen = len(await _live_events(redis, prefix))
            procs.append(start_worker(f"worker-replay-{replay}", env, tmp_path))
            await wait_for(drained, f"replay {replay} to be consumed and committed", 90, procs[-1:])
            out.after.append(await table_state(pool))
            out.events_after.append((await _live_events(redis, prefix))[seen:])
        return out
    finally:
        for proc in procs:
            proc.stop(30)
        await sim.close()


def _changed(before: Rows, after: Rows) -> dict[str, tuple[list[tuple[str, ...]], list[tuple[str, ...]]]]:
    """Per changed table: (rows only before, rows only after), the first two of each."""
    return {t: (sorted(set(before[t]) - set(after[t]))[:2], sorted(set(after[t]) - set(before[t]))[:2])
            for t in before if before[t] != after.get(t)}


@pytest.mark.timeout(150)
async def test_a_run_replayed_twice_leaves_every_table_identical(
    settings: Settings, database_url: str, redis_url: str, redis_client: aioredis.Redis, db_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    r = await replay_twice(settings, database_url, redis_url, redis_client, db_pool, tmp_path, runs=1)
    for i, after in enumerate(r.after, 1):
        assert _changed(r.before, after) == {}, f"replay {i}"
    # The run was announced when it was stored; a replay writes no row, so subscribers get nothing again.
    assert any(e["type"] == "scores" for e in r.events_before)
    assert r.events_after == [[], []]


@pytest.mark.timeout(150)
async def test_two_runs_replayed_twice_leave_every_table_identical(
    settings: Settings, database_url: str, redis_url: str, redis_client: aioredis.Redis, db_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    r = await replay_twice(settings, database_url, redis_url, redis_client, db_pool, tmp_path, runs=2)
    # The older run's records are scored again against the newer state (other confidence): they must not
    # overwrite what is stored, nor count history observations again.
    assert [_changed(r.before, after) for after in r.after] == [{}, {}]
    assert r.events_after == [[], []]
