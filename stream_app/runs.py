"""Scoring-run bookkeeping in PostgreSQL: open, fail, count, complete, time out.

A run's counters are always *derived from rows* (trust_scores and scoring_failures for the run), so a
replayed record can never make them drift. Status moves running → completed when every expected record
is in, running → partial/failed when it times out (a late record can still complete a partial run), and
running → failed when the fetch itself failed. Every transition writes one audit-log row, in the same
transaction, and is returned to the caller so it can be announced to the web tier.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from stream_app.messages import dumps_wide
from stream_app.records import ClusterContext, RunHeader

SYSTEM_ACTOR = "system:pipeline"
FINAL_STATUSES = ("completed", "partial", "failed")


@dataclass(frozen=True, slots=True)
class RunProgress:
    """A run's counters after an update, and whether its status changed in that update."""

    run_id: str
    status: str
    validator_count: int
    success_count: int
    fail_count: int
    previous_status: str

    @property
    def changed(self) -> bool:
        return self.status != self.previous_status

    def live_event(self) -> dict[str, Any]:
        return {
            "type": "run",
            "run_id": self.run_id,
            "status": self.status,
            "success_count": self.success_count,
            "fail_count": self.fail_count,
            "validator_count": self.validator_count,
        }


async def audit(conn: asyncpg.Connection, action: str, metadata: dict[str, Any],
                actor: str | None = SYSTEM_ACTOR) -> None:
    await conn.execute(
        "INSERT INTO audit_log (action, actor_id, metadata) VALUES ($1, $2, $3)", action, actor, metadata
    )


def _ts(unix_seconds: float) -> datetime:
    return datetime.fromtimestamp(unix_seconds, tz=UTC)


async def open_run(conn: asyncpg.Connection, header: RunHeader, context: ClusterContext | None = None,
                   *, actor: str | None = SYSTEM_ACTOR, scoring_version: str | None = None,
                   fetched_at: float | None = None) -> bool:
    """Record a run as `running` before its records are produced. Returns False if it already existed.

    `run_date` is when the fetch started, `fetched_at` when the snapshot was complete (default: the same).
    """
    async with conn.transaction():
        created = await conn.fetchval(
            """
            INSERT INTO scoring_runs (id, run_date, status, validator_count, epoch, slot, trigger, source,
                                      scoring_version, fetched_at, cluster_context)
            VALUES ($1, $2::timestamptz, 'running', $3, $4, $5, $6, $7, $8,
                    coalesce($10::timestamptz, $2::timestamptz), $9::text::jsonb)
            ON CONFLICT (id) DO NOTHING
            RETURNING true
            """,
            header.run_id, _ts(header.started_at), header.expected_count, header.epoch, header.slot,
            header.trigger, header.source, scoring_version, dumps_wide(context).decode() if context else None,
            _ts(fetched_at) if fetched_at is not None else None,
        )
        if created:
            await audit(conn, "scoring_run.started", {
                "run_id": header.run_id, "epoch": header.epoch, "slot": header.slot,
                "validator_count": header.expected_count, "trigger": header.trigger, "source": header.source,
            }, actor)
    return bool(created)


async def fail_run(conn: asyncpg.Connection, run_id: str, error: str, *, trigger: str = "timer",
                   source: str | None = None, started_at: float | None = None,
                   actor: str | None = SYSTEM_ACTOR) -> RunProgress:
    """Record a run whose fetch failed (the row is created if the failure came before `open_run`)."""
    async with conn.transaction():
        previous = await conn.fetchval("SELECT status FROM scoring_runs WHERE id = $1 FOR NO KEY UPDATE", run_id)
        row = await conn.fetchrow(
            """
            INSERT INTO scoring_runs (id, run_date, status, trigger, source, error, completed_at)
            VALUES ($1, coalesce($2, now()), 'failed', $3, $4, $5, now())
            ON CONFLICT (id) DO UPDATE
               SET status = 'failed', error = EXCLUDED.error, completed_at = now(), updated_at = now()
            RETURNING status, validator_count, success_count, fail_count
            """,
            run_id, _ts(started_at) if started_at is not None else None, trigger, source, error[:2000],
        )
        await audit(conn, "scoring_run.failed", {"run_id": run_id, "error": error[:2000], "trigger": trigger,
                                                 "source": source}, actor)
    return RunProgress(run_id, row["status"], row["validator_count"], row["success_count"], row["fail_count"],
                       previous or "running")


async def record_fetch_request(conn: asyncpg.Connection, run_id: str, trigger: str, actor: str | None) -> None:
    """Audit an operator's or admin's request for a fetch (the run itself is audited when it starts)."""
    await audit(conn, "scoring_run.requested", {"run_id": run_id, "trigger": trigger}, actor)


_LOCK_RUNS = "SELECT id, status FROM scoring_runs WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE"

# Runs a fresh statement after the lock so it sees rows committed by concurrent writers of the same run.
_RECOUNT = """
WITH counts AS (
    SELECT r.id,
           (SELECT count(*) FROM trust_scores t WHERE t.scoring_run_id = r.id)      AS ok,
           (SELECT count(*) FROM scoring_failures f WHERE f.scoring_run_id = r.id)  AS failed
      FROM scoring_runs r
     WHERE r.id = ANY($1::uuid[])
)
UPDATE scoring_runs r
   SET success_count = c.ok,
       fail_count = c.failed,
       status = CASE WHEN r.status IN ('running', 'partial') AND r.validator_count > 0
                          AND c.ok + c.failed >= r.validator_count THEN 'completed'
                     ELSE r.status END,
       completed_at = CASE WHEN r.status IN ('running', 'partial') AND r.validator_count > 0
                                AND c.ok + c.failed >= r.validator_count THEN clock_timestamp()
                           ELSE r.completed_at END,
       updated_at = now()
  FROM counts c
 WHERE r.id = c.id
RETURNING r.id::text AS id, r.status, r.validator_count, r.success_count, r.fail_count, r.epoch
"""


async def recount(conn: asyncpg.Connection, run_ids: Iterable[str]) -> list[RunProgress]:
    """Recompute counters (and completion) of runs from their rows. Call inside the writer's transaction."""
    ids = sorted(set(run_ids))
    if not ids:
        return []
    before = {str(r["id"]): r["status"] for r in await conn.fetch(_LOCK_RUNS, ids)}
    rows = await conn.fetch(_RECOUNT, ids)
    progress = [RunProgress(r["id"], r["status"], r["validator_count"], r["success_count"], r["fail_count"],
                            before.get(r["id"], r["status"])) for r in rows]
    for p in progress:
        if p.changed:
            await audit(conn, f"scoring_run.{p.status}", {
                "run_id": p.run_id, "validator_count": p.validator_count,
                "success_count": p.success_count, "fail_count": p.fail_count,
            })
    return progress


async def close_overdue_runs(conn: asyncpg.Connection, timeout_seconds: float) -> list[RunProgress]:
    """Runs still `running` after the timeout become `partial` (some records in) or `failed` (none)."""
    async with conn.transaction():
        ids = [str(r["id"]) for r in await conn.fetch(
            "SELECT id FROM scoring_runs WHERE status = 'running' "
            "AND coalesce(fetched_at, run_date) < now() - make_interval(secs => $1)",
            timeout_seconds,
        )]
        if not ids:
            return []
        counted = {p.run_id: p for p in await recount(conn, ids)}
        out = []
        for run_id in ids:
            p = counted[run_id]
            if p.status != "running":
                out.append(p)  # recount completed it after all
                continue
            status = "partial" if p.success_count + p.fail_count > 0 else "failed"
            error = (f"timed out after {timeout_seconds:g} s with {p.success_count + p.fail_count} "
                     f"of {p.validator_count} records")
            await conn.execute(
                "UPDATE scoring_runs SET status = $2, error = coalesce(error, $3), completed_at = now(), "
                "updated_at = now() WHERE id = $1", run_id, status, error,
            )
            await audit(conn, f"scoring_run.{status}", {
                "run_id": run_id, "reason": error, "validator_count": p.validator_count,
                "success_count": p.success_count, "fail_count": p.fail_count,
            })
            out.append(RunProgress(run_id, status, p.validator_count, p.success_count, p.fail_count, "running"))
        return out


async def seconds_since_last_attempt(conn: asyncpg.Connection, triggers: Sequence[str] = ("timer",)) -> float | None:
    """Seconds since the newest run of these triggers started (any status), or None if there is none."""
    value = await conn.fetchval(
        "SELECT extract(epoch FROM now() - max(run_date)) FROM scoring_runs WHERE trigger = ANY($1::text[])",
        list(triggers),
    )
    return None if value is None else float(value)


async def run_status(conn: asyncpg.Connection, run_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT id::text AS id, status, validator_count, success_count, fail_count, epoch, slot, trigger, source, "
        "error, run_date, completed_at FROM scoring_runs WHERE id = $1", run_id,
    )
    return dict(row) if row else None


async def latest_runs(conn: asyncpg.Connection, limit: int = 5) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id::text AS id, status, validator_count, success_count, fail_count, epoch, slot, trigger, source, "
        "error, run_date, completed_at FROM scoring_runs ORDER BY run_date DESC LIMIT $1", limit,
    )
    return [dict(r) for r in rows]
