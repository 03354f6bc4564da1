"""`solstake verify`: read-only consistency checks of the database, each a named SQL query.

A check passes when its query returns no rows; the rows it returns are the evidence of the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

COUNTS = {
    "validators": "SELECT count(*) FROM validators",
    "scoring_runs": "SELECT count(*) FROM scoring_runs",
    "trust_scores": "SELECT count(*) FROM trust_scores",
    "scoring_failures": "SELECT count(*) FROM scoring_failures",
    "validator_epoch_history": "SELECT count(*) FROM validator_epoch_history",
    "commission_events": "SELECT count(*) FROM commission_events",
    "audit_log": "SELECT count(*) FROM audit_log",
}

CHECKS: dict[str, str] = {
    # Counters are derived from rows; a mismatch means a writer bypassed the sink.
    "run counters match their rows": """
        SELECT r.id::text, r.success_count, r.fail_count,
               (SELECT count(*) FROM trust_scores t WHERE t.scoring_run_id = r.id) AS scores,
               (SELECT count(*) FROM scoring_failures f WHERE f.scoring_run_id = r.id) AS failures
          FROM scoring_runs r
         WHERE r.success_count <> (SELECT count(*) FROM trust_scores t WHERE t.scoring_run_id = r.id)
            OR r.fail_count <> (SELECT count(*) FROM scoring_failures f WHERE f.scoring_run_id = r.id)
         LIMIT 20""",
    "completed runs have every record": """
        SELECT id::text, validator_count, success_count, fail_count FROM scoring_runs
         WHERE status = 'completed' AND success_count + fail_count < validator_count LIMIT 20""",
    "no run holds more records than it expected": """
        SELECT id::text, validator_count, success_count, fail_count FROM scoring_runs
         WHERE validator_count > 0 AND success_count + fail_count > validator_count LIMIT 20""",
    "finished runs have a completion time": """
        SELECT id::text, status FROM scoring_runs
         WHERE status <> 'running' AND completed_at IS NULL LIMIT 20""",
    "failed runs say why": """
        SELECT id::text FROM scoring_runs WHERE status = 'failed' AND coalesce(error, '') = '' LIMIT 20""",
    "a validator is never both scored and failed in one run": """
        SELECT f.scoring_run_id::text, f.vote_account FROM scoring_failures f
          JOIN validators v ON v.vote_account = f.vote_account
          JOIN trust_scores t ON t.validator_id = v.id AND t.scoring_run_id = f.scoring_run_id LIMIT 20""",
    "latest score points at an existing score": """
        SELECT v.vote_account, v.latest_scoring_run_id::text FROM validators v
         WHERE v.latest_scoring_run_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM trust_scores t WHERE t.validator_id = v.id
                            AND t.scoring_run_id = v.latest_scoring_run_id) LIMIT 20""",
    "every failure belongs to a known validator": """
        SELECT f.scoring_run_id::text, f.vote_account FROM scoring_failures f
         WHERE NOT EXISTS (SELECT 1 FROM validators v WHERE v.vote_account = f.vote_account) LIMIT 20""",
    "scores are in range": """
        SELECT id, score, confidence FROM trust_scores
         WHERE score NOT BETWEEN 0 AND 100 OR score = 'NaN' OR confidence NOT BETWEEN 0 AND 1 LIMIT 20""",
}


@dataclass(frozen=True)
class CheckResult:
    name: str
    problems: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_database(conn: asyncpg.Connection) -> tuple[dict[str, int], list[CheckResult]]:
    counts = {name: int(await conn.fetchval(sql)) for name, sql in COUNTS.items()}
    results = [CheckResult(name, [dict(r) for r in await conn.fetch(sql)]) for name, sql in CHECKS.items()]
    return counts, results


async def stale_running_runs(conn: asyncpg.Connection, timeout_seconds: float) -> list[dict[str, Any]]:
    """Runs still `running` past the timeout: the leader's sweeper should have closed them."""
    rows = await conn.fetch(
        "SELECT id::text, run_date FROM scoring_runs WHERE status = 'running' "
        "AND coalesce(fetched_at, run_date) < now() - make_interval(secs => $1) LIMIT 20", timeout_seconds * 2,
    )
    return [dict(r) for r in rows]
