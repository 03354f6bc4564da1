"""The PostgreSQL sink on a real database: batches, replays, failures, counters, completion."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg
import redis.asyncio as aioredis

from stream_app import live
from stream_app.runs import close_overdue_runs, fail_run, open_run
from stream_app.sinks.postgres import announce, persist_scores
from tests.pipeline.factories import header, new_run_id, score_event


async def _counts(pool: asyncpg.Pool, run_id: str) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT status, validator_count, success_count, fail_count, completed_at FROM scoring_runs WHERE id = $1",
        run_id,
    )


async def test_batch_writes_every_table_and_completes_the_run(db_pool: asyncpg.Pool) -> None:
    run = new_run_id()
    async with db_pool.acquire() as conn:
        assert await open_run(conn, header(run, 3))
    result = await persist_scores(db_pool, [score_event(run, i, score=50 + i) for i in range(3)])
    assert result.stored == 3 and result.failed == 0
    row = await _counts(db_pool, run)
    assert (row["status"], row["success_count"], row["fail_count"]) == ("completed", 3, 0)
    assert row["completed_at"] is not None
    scores = await db_pool.fetch(
        "SELECT v.vote_account, t.score, t.components FROM trust_scores t JOIN validators v ON v.id = t.validator_id "
        "WHERE t.scoring_run_id = $1 ORDER BY v.vote_account", run)
    assert [s["score"] for s in scores] == [50, 51, 52]
    assert scores[0]["components"][0]["name"] == "vote_performance"
    v = await db_pool.fetchrow("SELECT * FROM validators WHERE vote_account = $1", scores[0]["vote_account"])
    assert v["latest_score"] == 50 and str(v["latest_scoring_run_id"]) == run and v["name"] == "validator 0"
    history = await db_pool.fetch(
        "SELECT epoch, credits, commission_first, observations FROM validator_epoch_history "
        "WHERE validator_id = $1 ORDER BY epoch", v["id"])
    assert [(h["epoch"], h["credits"], h["observations"]) for h in history] == [(751, 5_999_900, 0),
                                                                                 (752, 100_000, 1)]
    assert history[1]["commission_first"] == 5
    actions = [r["action"] for r in await db_pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["scoring_run.started", "scoring_run.completed"]
    changed = [p for p in result.runs if p.changed]
    assert [(p.status, p.success_count) for p in changed] == [("completed", 3)]


async def test_replayed_batches_write_each_row_once_and_keep_exact_counts(db_pool: asyncpg.Pool) -> None:
    run = new_run_id()
    async with db_pool.acquire() as conn:
        await open_run(conn, header(run, 10))
    events = [score_event(run, i) for i in range(10)]
    await persist_scores(db_pool, events[:6])
    await persist_scores(db_pool, events[3:6] + events[3:6])  # a replay, duplicated inside one batch too
    row = await _counts(db_pool, run)
    assert (row["status"], row["success_count"]) == ("running", 6)
    result = await persist_scores(db_pool, events)  # everything again, including the tail
    row = await _counts(db_pool, run)
    assert (row["status"], row["success_count"], row["fail_count"]) == ("completed", 10, 0)
    assert await db_pool.fetchval("SELECT count(*) FROM trust_scores WHERE scoring_run_id = $1", run) == 10
    assert await db_pool.fetchval("SELECT sum(observations) FROM validator_epoch_history") == 10
    assert [p.status for p in result.runs if p.changed] == ["completed"]
    await persist_scores(db_pool, events)  # a replay after completion changes nothing and logs nothing
    assert await db_pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'scoring_run.completed'") == 1


async def test_bad_events_become_counted_failures_not_lost_batches(db_pool: asyncpg.Pool) -> None:
    run = new_run_id()
    async with db_pool.acquire() as conn:
        await open_run(conn, header(run, 4))
    events = [
        score_event(run, 0),
        score_event(run, 1, failed=True),
        score_event(run, 2, score=float("nan")),
        score_event(run, 3, score=140.0),
        score_event("not-a-uuid", 4),
    ]
    result = await persist_scores(db_pool, events)
    assert (result.stored, result.failed, result.rejected) == (1, 3, 1)
    row = await _counts(db_pool, run)
    assert (row["status"], row["success_count"], row["fail_count"]) == ("completed", 1, 3)
    errors = dict(await db_pool.fetch("SELECT vote_account, error FROM scoring_failures ORDER BY vote_account"))
    assert len(errors) == 3 and any("140" in e for e in errors.values())
    # The validators are still known even though their scores failed.
    assert await db_pool.fetchval("SELECT count(*) FROM validators") == 4


async def test_a_retried_success_replaces_an_earlier_failure(db_pool: asyncpg.Pool) -> None:
    run = new_run_id()
    async with db_pool.acquire() as conn:
        await open_run(conn, header(run, 2))
    await persist_scores(db_pool, [score_event(run, 0, failed=True)])
    row = await _counts(db_pool, run)
    assert (row["success_count"], row["fail_count"]) == (0, 1)
    await persist_scores(db_pool, [score_event(run, 0), score_event(run, 1)])
    row = await _counts(db_pool, run)
    assert (row["status"], row["success_count"], row["fail_count"]) == ("completed", 2, 0)
    await persist_scores(db_pool, [score_event(run, 0, failed=True)])  # a late failure never undoes a score
    assert (await _counts(db_pool, run))["fail_count"] == 0


async def test_an_older_run_replayed_late_does_not_overwrite_the_newer_validator_row(db_pool: asyncpg.Pool) -> None:
    old, new = new_run_id(), new_run_id()
    async with db_pool.acquire() as conn:
        await open_run(conn, header(old, 1, started_at=1000.0))
        await open_run(conn, header(new, 1, started_at=2000.0))
    await persist_scores(db_pool, [score_event(new, 0, score=90, observed_at=2000.0, commission=7)])
    await persist_scores(db_pool, [score_event(old, 0, score=10, observed_at=1000.0, commission=3)])
    v = await db_pool.fetchrow("SELECT latest_score, commission, latest_scoring_run_id FROM validators")
    assert (v["latest_score"], v["commission"], str(v["latest_scoring_run_id"])) == (90, 7, new)
    assert await db_pool.fetchval("SELECT count(*) FROM trust_scores") == 2  # both runs keep their score


async def test_commission_events_are_stored_once_and_announced(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    run = new_run_id()
    async with db_pool.acquire() as conn:
        await open_run(conn, header(run, 1))
    rug = {"kind": "rug", "epoch": 751, "old_commission": 5, "new_commission": 100, "applied_commission": 100}
    bogus = {"kind": "teleport", "epoch": 751}
    first = await persist_scores(db_pool, [score_event(run, 0, events=[rug, bogus])])
    again = await persist_scores(db_pool, [score_event(run, 0, events=[rug])])
    assert [e["kind"] for e in first.commission_events] == ["rug"] and again.commission_events == []
    assert await db_pool.fetchval("SELECT count(*) FROM commission_events") == 1
    ids = await announce(redis_client, redis_prefix, first)
    entries = await redis_client.xrange(live.stream_key(redis_prefix))
    assert [e[0].decode() for e in entries] == ids
    events = [live.decode_entry(fields) for _id, fields in entries]
    assert [e["type"] for e in events if e] == ["scores", "commission", "run"]
    assert events[0] == {"type": "scores", "run_id": run, "epoch": 752, "validators": [score_event(run, 0).vote_pubkey]}
    assert events[2]["status"] == "completed" and events[2]["success_count"] == 1


async def test_concurrent_writers_of_one_run_count_exactly(db_pool: asyncpg.Pool) -> None:
    run = new_run_id()
    async with db_pool.acquire() as conn:
        await open_run(conn, header(run, 40))
    events = [score_event(run, i) for i in range(40)]
    await asyncio.gather(*(persist_scores(db_pool, events[k::4]) for k in range(4)))
    row = await _counts(db_pool, run)
    assert (row["status"], row["success_count"]) == ("completed", 40)


async def test_overdue_runs_become_partial_or_failed_with_counts(db_pool: asyncpg.Pool) -> None:
    some, none, fresh = new_run_id(), new_run_id(), new_run_id()
    async with db_pool.acquire() as conn:
        await open_run(conn, header(some, 5, started_at=1_000.0))
        await open_run(conn, header(none, 5, started_at=1_000.0))
        await open_run(conn, header(fresh, 5))
    await persist_scores(db_pool, [score_event(some, i) for i in range(2)])
    async with db_pool.acquire() as conn:
        closed = await close_overdue_runs(conn, 60)
        assert await close_overdue_runs(conn, 60) == []
    assert {(p.run_id, p.status, p.success_count) for p in closed} == {(some, "partial", 2), (none, "failed", 0)}
    assert (await _counts(db_pool, fresh))["status"] == "running"
    error = await db_pool.fetchval("SELECT error FROM scoring_runs WHERE id = $1", some)
    assert "2 of 5" in error
    # The missing records arriving late still complete the partial run.
    await persist_scores(db_pool, [score_event(some, i) for i in range(2, 5)])
    assert (await _counts(db_pool, some))["status"] == "completed"


async def test_a_failed_fetch_is_recorded_with_its_reason(db_pool: asyncpg.Pool) -> None:
    run = new_run_id()
    async with db_pool.acquire() as conn:
        progress = await fail_run(conn, run, "RPC unreachable: connection refused", source="http://x")
    assert progress.status == "failed" and progress.changed
    row = await db_pool.fetchrow("SELECT status, error, completed_at FROM scoring_runs WHERE id = $1", run)
    assert row["status"] == "failed" and "connection refused" in row["error"] and row["completed_at"]
    assert await db_pool.fetchval("SELECT action FROM audit_log") == "scoring_run.failed"


async def test_a_run_with_cluster_totals_past_64_bits_is_stored(db_pool: asyncpg.Pool) -> None:
    from stream_app.records import ClusterContext

    run = new_run_id()
    ctx = ClusterContext(run_id=run, epoch=752, slot=1, slot_index=1, slots_in_epoch=432_000,
                         total_active_stake=2**70, validator_count=1, superminority_min_stake=5)
    async with db_pool.acquire() as conn:
        assert await open_run(conn, header(run, 1), ctx)
    stored = await db_pool.fetchval("SELECT cluster_context->>'total_active_stake' FROM scoring_runs")
    assert int(stored) == 2**70


async def _table_rows(pool: asyncpg.Pool) -> dict[str, list[str]]:
    return {t: sorted(str(tuple(r)) for r in await pool.fetch(f"SELECT * FROM {t}"))
            for t in ("trust_scores", "scoring_failures", "validator_epoch_history", "commission_events")}


async def test_replayed_events_change_no_row_and_report_nothing_to_announce(db_pool: asyncpg.Pool) -> None:
    old, new = new_run_id(), new_run_id()
    async with db_pool.acquire() as conn:
        await open_run(conn, header(old, 3, started_at=1000.0))
        await open_run(conn, header(new, 3, started_at=2000.0))
    old_events = [score_event(old, i, observed_at=1000.0) for i in range(3)]
    new_events = [score_event(new, i, observed_at=2000.0) for i in range(3)]
    await persist_scores(db_pool, old_events)
    await persist_scores(db_pool, new_events)
    stored = await _table_rows(db_pool)
    # The older run re-scored against the newer state (applied=False): other values, same pairs.
    rescored = [replace(e, confidence=0.5, applied=False) for e in old_events]
    for batch in (old_events, rescored, new_events + rescored, old_events[:1] + new_events[2:]):
        result = await persist_scores(db_pool, batch)
        assert (result.scored, result.stored, result.live_events()) == ({}, 0, [])
        assert await _table_rows(db_pool) == stored
    # A replayed failure after a score is a replay too; a changed applied score is a real change.
    assert (await persist_scores(db_pool, [score_event(new, 0, failed=True)])).live_events() == []
    changed = await persist_scores(db_pool, [replace(new_events[1], score=12.5), *old_events])
    assert changed.scored == {new: [new_events[1].vote_pubkey]} and changed.stored == 1
    assert [e["type"] for e in changed.live_events()] == ["scores"]
    assert await db_pool.fetchval(
        "SELECT t.score FROM trust_scores t JOIN validators v ON v.id = t.validator_id "
        "WHERE t.scoring_run_id = $1 AND v.vote_account = $2", new, new_events[1].vote_pubkey) == 12.5
    assert await db_pool.fetchval("SELECT sum(observations) FROM validator_epoch_history") == 6


async def test_history_rows_change_only_when_a_value_does(db_pool: asyncpg.Pool) -> None:
    first, second = new_run_id(), new_run_id()
    async with db_pool.acquire() as conn:
        await open_run(conn, header(first, 1, started_at=1000.0))
        await open_run(conn, header(second, 1, started_at=2000.0))
    await persist_scores(db_pool, [score_event(first, 0, observed_at=1000.0, commission=5)])
    query = ("SELECT epoch, credits, commission_first, commission_last, commission_min, commission_max, "
             "observations, updated_at FROM validator_epoch_history ORDER BY epoch")
    before = await db_pool.fetch(query)
    await persist_scores(db_pool, [score_event(second, 0, observed_at=2000.0, commission=9,
                                               leader_slots=44, blocks_produced=41)])
    past, current = await db_pool.fetch(query)
    assert past == before[0]  # the finished epoch seen again unchanged: not rewritten (same updated_at)
    assert (current["commission_first"], current["commission_last"], current["commission_min"],
            current["commission_max"], current["observations"]) == (5, 9, 5, 9, 2)
    assert current["updated_at"] > before[1]["updated_at"]
