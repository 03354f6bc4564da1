"""The seed's business metrics, read from PostgreSQL: validator count, data freshness, run completion rate,
coverage and the trust-score distribution.

One read (`read_snapshot`) feeds both the `metrics summary` command and a Prometheus collector. The
collector never queries at scrape time without a bound: `refresh()` runs the queries under a timeout and
keeps the last good snapshot, and `collect()` only formats it, so a slow database cannot stall a scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

SCORE_BOUNDS = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0)
RUN_STATUSES = ("running", "completed", "partial", "failed")
COMPLETION_WINDOW = 100  # finished runs considered for the completion rate

_COUNTS = """
SELECT count(*)                                          AS validators,
       count(*) FILTER (WHERE delinquent)                AS delinquent,
       count(latest_score)                               AS scored,
       coalesce(sum(latest_score), 0)::float8            AS score_sum,
       {buckets}
  FROM validators
"""
_BUCKETS_SQL = ", ".join(
    f"count(*) FILTER (WHERE latest_score <= {bound}) AS le_{int(bound)}" for bound in SCORE_BOUNDS
)

_RUNS = "SELECT status, count(*) AS n FROM scoring_runs GROUP BY status"

_COMPLETION = """
SELECT count(*) FILTER (WHERE status = 'completed') AS completed, count(*) AS finished
  FROM (SELECT status FROM scoring_runs WHERE status <> 'running' ORDER BY run_date DESC LIMIT $1) AS recent
"""

_LATEST_FINISHED = """
SELECT id::text AS id, status, validator_count, success_count, fail_count, epoch, slot, source, trigger,
       run_date, completed_at
  FROM scoring_runs WHERE status <> 'running' ORDER BY run_date DESC LIMIT 1
"""

_LAST_COMPLETED = """
SELECT extract(epoch FROM max(completed_at))::float8 FROM scoring_runs WHERE status = 'completed'
"""


@dataclass(frozen=True)
class BusinessSnapshot:
    taken_at: float
    validators: int
    delinquent: int
    scored: int
    score_sum: float
    score_buckets: tuple[tuple[float, int], ...]  # cumulative (upper bound, count)
    runs_by_status: dict[str, int]
    completed_recent: int
    finished_recent: int
    last_completed_at: float | None  # unix seconds
    latest_run: dict[str, Any] | None = field(default=None)

    @property
    def completion_rate(self) -> float | None:
        return self.completed_recent / self.finished_recent if self.finished_recent else None

    @property
    def coverage(self) -> float | None:
        """Share of the latest finished run's validators that got a score."""
        run = self.latest_run
        if not run or not run["validator_count"]:
            return None
        return float(run["success_count"]) / float(run["validator_count"])

    def freshness(self, now: float | None = None) -> float | None:
        """Seconds since the last completed run, or None if no run ever completed."""
        if self.last_completed_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.last_completed_at)


async def read_snapshot(conn: asyncpg.Connection | asyncpg.Pool) -> BusinessSnapshot:
    counts = await conn.fetchrow(_COUNTS.format(buckets=_BUCKETS_SQL))
    runs = {r["status"]: int(r["n"]) for r in await conn.fetch(_RUNS)}
    completion = await conn.fetchrow(_COMPLETION, COMPLETION_WINDOW)
    latest = await conn.fetchrow(_LATEST_FINISHED)
    last_completed = await conn.fetchval(_LAST_COMPLETED)
    assert counts is not None and completion is not None
    return BusinessSnapshot(
        taken_at=time.time(),
        validators=int(counts["validators"]),
        delinquent=int(counts["delinquent"]),
        scored=int(counts["scored"]),
        score_sum=float(counts["score_sum"]),
        score_buckets=tuple((b, int(counts[f"le_{int(b)}"])) for b in SCORE_BOUNDS),
        runs_by_status={status: runs.get(status, 0) for status in RUN_STATUSES},
        completed_recent=int(completion["completed"]),
        finished_recent=int(completion["finished"]),
        last_completed_at=None if last_completed is None else float(last_completed),
        latest_run=_plain(dict(latest)) if latest else None,
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.timestamp() if isinstance(v, datetime) else v) for k, v in row.items()}


class BusinessCollector(Collector):
    """Prometheus view of the last snapshot; `refresh()` (bounded by a timeout) replaces it."""

    def __init__(self, max_age: float = 15.0, timeout: float = 1.0) -> None:
        self.max_age = max_age
        self.timeout = timeout
        self.snapshot: BusinessSnapshot | None = None
        self.last_error: str | None = None
        self._source: int | None = None  # id() of the pool the snapshot came from
        self._lock = asyncio.Lock()

    async def refresh(self, pool: asyncpg.Pool, *, force: bool = False) -> None:
        """Re-read PostgreSQL if the snapshot is older than `max_age`; on failure keep the old one."""
        if self._source != id(pool):
            self.snapshot, self._source, force = None, id(pool), True  # another database: nothing to keep
        if not force and self.snapshot is not None and time.time() - self.snapshot.taken_at < self.max_age:
            return
        async with self._lock:
            if not force and self.snapshot is not None and time.time() - self.snapshot.taken_at < self.max_age:
                return
            try:
                self.snapshot = await asyncio.wait_for(read_snapshot(pool), self.timeout)
                self.last_error = None
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("business metrics not refreshed: %s", self.last_error)

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("solstake_business_metrics_up",
                               "1 if the last read of the business metrics from PostgreSQL succeeded, else 0.")
        up.add_metric([], 1.0 if self.snapshot is not None and self.last_error is None else 0.0)
        yield up
        snap = self.snapshot
        if snap is None:
            return
        yield _gauge("solstake_business_metrics_age_seconds",
                     "Seconds since the business metrics below were read from PostgreSQL.",
                     max(0.0, time.time() - snap.taken_at))
        yield _gauge("solstake_validators", "Validators (vote accounts) known to sol-stake.", snap.validators)
        yield _gauge("solstake_validators_delinquent", "Known validators currently marked delinquent.",
                     snap.delinquent)
        yield _gauge("solstake_validators_with_score", "Known validators that have a trust score.", snap.scored)
        runs = GaugeMetricFamily("solstake_scoring_runs", "Scoring runs stored in PostgreSQL, by status.",
                                 labels=["status"])
        for status, n in snap.runs_by_status.items():
            runs.add_metric([status], n)
        yield runs
        if snap.completion_rate is not None:
            yield _gauge("solstake_scoring_run_completion_ratio",
                         f"Share (0-1) of the last {COMPLETION_WINDOW} finished scoring runs that completed "
                         "(the others ended partial or failed).", snap.completion_rate)
        if snap.coverage is not None:
            yield _gauge("solstake_scoring_coverage_ratio",
                         "Share (0-1) of the validators of the latest finished run that received a score.",
                         snap.coverage)
        if snap.last_completed_at is not None:
            yield _gauge("solstake_last_completed_run_timestamp_seconds",
                         "Unix time at which the latest completed scoring run finished.", snap.last_completed_at)
            yield _gauge("solstake_data_freshness_seconds",
                         "Seconds since the latest completed scoring run finished (alert when it grows past "
                         "a few fetch intervals).", snap.freshness() or 0.0)
        hist = HistogramMetricFamily(
            "solstake_validator_trust_score",
            "Current distribution of validators' latest trust scores (0-100), recomputed from PostgreSQL; "
            "not cumulative over time.",
        )
        buckets = [(_le(b), float(n)) for b, n in snap.score_buckets] + [("+Inf", float(snap.scored))]
        hist.add_metric([], buckets, snap.score_sum)
        yield hist


def _le(bound: float) -> str:
    return floatToGoString(bound)  # "10.0", as prometheus-client's own histograms write it


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    metric = GaugeMetricFamily(name, doc)
    metric.add_metric([], float(value))
    return metric
