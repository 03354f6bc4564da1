"""The PostgreSQL sink: one transaction per batch of ScoreEvents, idempotent under replays.

Rows are COPYed into per-connection temporary staging tables and merged with `INSERT … SELECT … ON
CONFLICT`, so a batch costs a handful of round trips whatever its size, and a replayed event rewrites
the same rows (trust_scores is unique per run and validator). Run counters are recounted from rows in
the same transaction (see `stream_app.runs`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from stream_app import live
from stream_app.records import ScoreEvent
from stream_app.runs import RunProgress, recount
from stream_app.sinks.rows import BatchRows, plan_batch

log = logging.getLogger(__name__)

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS stage_validators (
    vote_account text, validator_pubkey text, name text, website text, details text, icon_url text,
    keybase_username text, commission smallint, activated_stake bigint, uptime double precision,
    delinquent boolean, version text, gossip_ip text, authorized_withdrawer text, epoch integer,
    score double precision, run_id text, observed_at double precision
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_scores (
    run_id text, vote_account text, score double precision, confidence double precision,
    components text, penalties text, scoring_version text, epoch integer, applied boolean
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_failures (run_id text, vote_account text, error text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_history (
    vote_account text, epoch integer, credits bigint, commission smallint, activated_stake bigint,
    leader_slots integer, blocks_produced integer, delinquent boolean, observed_run_id text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_applied (vote_account text, epoch integer, commission smallint)
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_commission (
    vote_account text, epoch integer, kind text, old_commission smallint, new_commission smallint,
    applied_commission smallint, run_id text, details text
) ON COMMIT DELETE ROWS;
"""

_COLUMNS = {
    "stage_validators": ("vote_account", "validator_pubkey", "name", "website", "details", "icon_url",
                         "keybase_username", "commission", "activated_stake", "uptime", "delinquent",
                         "version", "gossip_ip", "authorized_withdrawer", "epoch", "score", "run_id",
                         "observed_at"),
    "stage_scores": ("run_id", "vote_account", "score", "confidence", "components", "penalties",
                     "scoring_version", "epoch", "applied"),
    "stage_failures": ("run_id", "vote_account", "error"),
    "stage_history": ("vote_account", "epoch", "credits", "commission", "activated_stake", "leader_slots",
                      "blocks_produced", "delinquent", "observed_run_id"),
    "stage_applied": ("vote_account", "epoch", "commission"),
    "stage_commission": ("vote_account", "epoch", "kind", "old_commission", "new_commission",
                         "applied_commission", "run_id", "details"),
}

# Events whose (run, validator) already has its stored result, which they must leave as it is: a score row
# they would rewrite with the same values, or with values computed from a state that had moved on (a
# record of an older run replayed after a newer one: `applied` false), or a failure after any stored
# result. Such a replay writes nothing at all (no history observation, no validator update, no
# announcement). An applied event with different values is a real change and still rewrites its row.
_FIND_REPLAYS = """
SELECT s.run_id, s.vote_account
  FROM stage_scores s
  JOIN validators v ON v.vote_account = s.vote_account
  JOIN trust_scores t ON t.validator_id = v.id AND t.scoring_run_id = s.run_id::uuid
 WHERE NOT s.applied
    OR (t.score, t.confidence, t.components, t.penalties, t.scoring_version, t.epoch) IS NOT DISTINCT FROM
       (s.score, s.confidence, s.components::jsonb, s.penalties::jsonb, s.scoring_version, s.epoch)
UNION ALL
SELECT f.run_id, f.vote_account
  FROM stage_failures f
 WHERE EXISTS (SELECT 1 FROM scoring_failures x
                WHERE x.scoring_run_id = f.run_id::uuid AND x.vote_account = f.vote_account)
    OR EXISTS (SELECT 1 FROM trust_scores t JOIN validators v ON v.id = t.validator_id
                WHERE t.scoring_run_id = f.run_id::uuid AND v.vote_account = f.vote_account)
"""

_ENSURE_RUNS = """
INSERT INTO scoring_runs (id, epoch)
SELECT r::uuid, e FROM unnest($1::text[], $2::int[]) AS u(r, e)
ON CONFLICT (id) DO NOTHING
"""

_UPSERT_VALIDATORS = """
INSERT INTO validators AS v (
    vote_account, validator_pubkey, name, website, details, icon_url, keybase_username, commission,
    activated_stake, uptime, delinquent, version, gossip_ip, authorized_withdrawer, first_seen_epoch,
    last_seen_epoch, latest_score, latest_scoring_run_id, last_observed_at)
SELECT vote_account, validator_pubkey, name, website, details, icon_url, keybase_username, commission,
       activated_stake, uptime, delinquent, version, gossip_ip, authorized_withdrawer, epoch, epoch, score,
       CASE WHEN score IS NULL THEN NULL ELSE run_id::uuid END, to_timestamp(observed_at)
  FROM stage_validators
ON CONFLICT (vote_account) DO UPDATE SET
    validator_pubkey = EXCLUDED.validator_pubkey,
    name = coalesce(EXCLUDED.name, v.name),
    website = coalesce(EXCLUDED.website, v.website),
    details = coalesce(EXCLUDED.details, v.details),
    icon_url = coalesce(EXCLUDED.icon_url, v.icon_url),
    keybase_username = coalesce(EXCLUDED.keybase_username, v.keybase_username),
    commission = coalesce(EXCLUDED.commission, v.commission),
    activated_stake = EXCLUDED.activated_stake,
    uptime = EXCLUDED.uptime,
    delinquent = EXCLUDED.delinquent,
    version = coalesce(EXCLUDED.version, v.version),
    gossip_ip = coalesce(EXCLUDED.gossip_ip, v.gossip_ip),
    authorized_withdrawer = coalesce(EXCLUDED.authorized_withdrawer, v.authorized_withdrawer),
    first_seen_epoch = least(v.first_seen_epoch, EXCLUDED.first_seen_epoch),
    last_seen_epoch = greatest(v.last_seen_epoch, EXCLUDED.last_seen_epoch),
    latest_score = coalesce(EXCLUDED.latest_score, v.latest_score),
    latest_scoring_run_id = coalesce(EXCLUDED.latest_scoring_run_id, v.latest_scoring_run_id),
    last_observed_at = coalesce(EXCLUDED.last_observed_at, v.last_observed_at),
    updated_at = now()
WHERE v.last_observed_at IS NULL OR EXCLUDED.last_observed_at IS NULL
   OR EXCLUDED.last_observed_at >= v.last_observed_at
"""

# A validator whose newer run is already stored still needs a row to attach this run's score to: the
# upsert above skips it, and it already exists, so the joins below find it either way.

_DROP_SUPERSEDED_FAILURES = """
DELETE FROM scoring_failures f USING stage_scores s
 WHERE f.scoring_run_id = s.run_id::uuid AND f.vote_account = s.vote_account
"""

_UPSERT_SCORES = """
INSERT INTO trust_scores (validator_id, scoring_run_id, score, confidence, components, penalties,
                          scoring_version, epoch)
SELECT v.id, s.run_id::uuid, s.score, s.confidence, s.components::jsonb, s.penalties::jsonb,
       s.scoring_version, s.epoch
  FROM stage_scores s JOIN validators v ON v.vote_account = s.vote_account
ON CONFLICT (scoring_run_id, validator_id) DO UPDATE SET
    score = EXCLUDED.score, confidence = EXCLUDED.confidence, components = EXCLUDED.components,
    penalties = EXCLUDED.penalties, scoring_version = EXCLUDED.scoring_version, epoch = EXCLUDED.epoch
"""

_INSERT_FAILURES = """
INSERT INTO scoring_failures (scoring_run_id, vote_account, error)
SELECT f.run_id::uuid, f.vote_account, f.error
  FROM stage_failures f
 WHERE NOT EXISTS (SELECT 1 FROM trust_scores t JOIN validators v ON v.id = t.validator_id
                    WHERE t.scoring_run_id = f.run_id::uuid AND v.vote_account = f.vote_account)
ON CONFLICT (scoring_run_id, vote_account) DO UPDATE SET error = EXCLUDED.error
"""

_UPSERT_HISTORY = """
INSERT INTO validator_epoch_history AS h (
    validator_id, epoch, credits, commission_first, commission_last, commission_min, commission_max,
    activated_stake, leader_slots, blocks_produced, observations, delinquent_observations, last_run_id)
SELECT v.id, s.epoch, s.credits, s.commission, s.commission, s.commission, s.commission, s.activated_stake,
       s.leader_slots, s.blocks_produced,
       CASE WHEN s.observed_run_id IS NULL THEN 0 ELSE 1 END,
       CASE WHEN s.observed_run_id IS NOT NULL AND s.delinquent THEN 1 ELSE 0 END,
       s.observed_run_id::uuid
  FROM stage_history s JOIN validators v ON v.vote_account = s.vote_account
ON CONFLICT (validator_id, epoch) DO UPDATE SET
    credits = greatest(h.credits, EXCLUDED.credits),
    commission_first = coalesce(h.commission_first, EXCLUDED.commission_first),
    commission_last = coalesce(EXCLUDED.commission_last, h.commission_last),
    commission_min = least(h.commission_min, EXCLUDED.commission_min),
    commission_max = greatest(h.commission_max, EXCLUDED.commission_max),
    activated_stake = coalesce(EXCLUDED.activated_stake, h.activated_stake),
    leader_slots = greatest(h.leader_slots, EXCLUDED.leader_slots),
    blocks_produced = greatest(h.blocks_produced, EXCLUDED.blocks_produced),
    observations = h.observations + CASE WHEN EXCLUDED.last_run_id IS NOT NULL
        AND EXCLUDED.last_run_id IS DISTINCT FROM h.last_run_id THEN 1 ELSE 0 END,
    delinquent_observations = h.delinquent_observations + CASE WHEN EXCLUDED.last_run_id IS NOT NULL
        AND EXCLUDED.last_run_id IS DISTINCT FROM h.last_run_id THEN EXCLUDED.delinquent_observations ELSE 0 END,
    last_run_id = coalesce(EXCLUDED.last_run_id, h.last_run_id),
    updated_at = now()
-- Most rows of a batch are past epochs seen again unchanged: skip them instead of writing a new row version.
-- (The observation counters only move when last_run_id does.)
WHERE (greatest(h.credits, EXCLUDED.credits), coalesce(h.commission_first, EXCLUDED.commission_first),
       coalesce(EXCLUDED.commission_last, h.commission_last), least(h.commission_min, EXCLUDED.commission_min),
       greatest(h.commission_max, EXCLUDED.commission_max), coalesce(EXCLUDED.activated_stake, h.activated_stake),
       greatest(h.leader_slots, EXCLUDED.leader_slots), greatest(h.blocks_produced, EXCLUDED.blocks_produced),
       coalesce(EXCLUDED.last_run_id, h.last_run_id))
      IS DISTINCT FROM
      (h.credits, h.commission_first, h.commission_last, h.commission_min, h.commission_max, h.activated_stake,
       h.leader_slots, h.blocks_produced, h.last_run_id)
"""

_UPSERT_APPLIED = """
INSERT INTO validator_epoch_history AS h (validator_id, epoch, commission_applied)
SELECT v.id, s.epoch, s.commission FROM stage_applied s JOIN validators v ON v.vote_account = s.vote_account
ON CONFLICT (validator_id, epoch) DO UPDATE SET commission_applied = EXCLUDED.commission_applied,
                                               updated_at = now()
WHERE h.commission_applied IS DISTINCT FROM EXCLUDED.commission_applied
"""

_INSERT_COMMISSION_EVENTS = """
INSERT INTO commission_events (validator_id, epoch, kind, old_commission, new_commission, applied_commission,
                               scoring_run_id, details)
SELECT v.id, s.epoch, s.kind, s.old_commission, s.new_commission, s.applied_commission, s.run_id::uuid,
       s.details::jsonb
  FROM stage_commission s JOIN validators v ON v.vote_account = s.vote_account
ON CONFLICT (validator_id, epoch, kind) DO NOTHING
RETURNING epoch, kind, old_commission, new_commission,
          (SELECT vote_account FROM validators WHERE id = validator_id) AS vote_pubkey
"""


@dataclass
class PersistResult:
    """What one committed batch changed, for live announcements and metrics."""

    scored: dict[str, list[str]] = field(default_factory=dict)  # run_id -> vote accounts
    epochs: dict[str, int] = field(default_factory=dict)  # run_id -> epoch
    runs: list[RunProgress] = field(default_factory=list)
    commission_events: list[dict[str, Any]] = field(default_factory=list)
    stored: int = 0
    failed: int = 0
    rejected: int = 0

    def live_events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"type": "scores", "run_id": run_id, "epoch": self.epochs.get(run_id, 0), "validators": votes}
            for run_id, votes in self.scored.items()
        ]
        out.extend({"type": "commission", **ev} for ev in self.commission_events)
        out.extend(p.live_event() for p in self.runs if p.changed)
        return out


async def _copy(conn: asyncpg.Connection, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=_COLUMNS[table])


async def write_rows(conn: asyncpg.Connection, events: Sequence[ScoreEvent],
                     rows: BatchRows | None = None) -> PersistResult:
    """Merge a batch in one transaction on `conn`; `rows` is `plan_batch(events)` when already planned.

    Replayed events (see _FIND_REPLAYS) are left out, so a batch of nothing but replays changes nothing
    and reports nothing (`scored` only names the pairs actually written).
    """
    planned = rows if rows is not None else plan_batch(events)
    rejected = len(planned.rejected)
    if not planned.runs:
        return PersistResult(rejected=rejected)
    async with conn.transaction():
        await conn.execute(_STAGING)
        await _copy(conn, "stage_scores", planned.scores)
        await _copy(conn, "stage_failures", planned.failures)
        replays = {(r["run_id"], r["vote_account"]) for r in await conn.fetch(_FIND_REPLAYS)}
        if replays:
            planned = plan_batch(events, skip=replays)
            await conn.execute("DELETE FROM stage_scores; DELETE FROM stage_failures")
            if not planned.runs:
                return PersistResult(rejected=rejected)
            await _copy(conn, "stage_scores", planned.scores)
            await _copy(conn, "stage_failures", planned.failures)
        return await _merge(conn, planned, rejected)


async def _merge(conn: asyncpg.Connection, rows: BatchRows, rejected: int) -> PersistResult:
    result = PersistResult(scored=rows.scored, epochs=rows.runs, stored=len(rows.scores),
                           failed=len(rows.failures), rejected=rejected)
    run_ids = sorted(rows.runs)
    await conn.execute(_ENSURE_RUNS, run_ids, [rows.runs[r] for r in run_ids])
    for table, data in (("stage_validators", rows.validators), ("stage_history", rows.history),
                        ("stage_applied", rows.applied), ("stage_commission", rows.commission_events)):
        await _copy(conn, table, data)
    # The merges take no parameters: one round trip for all of them (simple query protocol, in order).
    merges = [_UPSERT_VALIDATORS]
    if rows.scores:
        merges += [_DROP_SUPERSEDED_FAILURES, _UPSERT_SCORES]
    if rows.failures:
        merges.append(_INSERT_FAILURES)
    if rows.history:
        merges.append(_UPSERT_HISTORY)
    if rows.applied:
        merges.append(_UPSERT_APPLIED)
    await conn.execute(";\n".join(merges))
    if rows.commission_events:
        result.commission_events = [
            {"vote_pubkey": r["vote_pubkey"], "epoch": r["epoch"], "kind": r["kind"],
             "old_commission": r["old_commission"], "new_commission": r["new_commission"]}
            for r in await conn.fetch(_INSERT_COMMISSION_EVENTS)
        ]
    result.runs = await recount(conn, run_ids)
    return result


async def persist_scores(pool: asyncpg.Pool, events: Sequence[ScoreEvent]) -> PersistResult:
    """Write a batch of score events; safe to call again with the same events."""
    rows = plan_batch(events)
    for event, why in rows.rejected:
        log.error("dropping a score event that cannot belong to any run (%s): %r", why, event.vote_pubkey)
    async with pool.acquire() as conn:
        return await write_rows(conn, events, rows)


async def announce(redis: aioredis.Redis, prefix: str, result: PersistResult) -> list[str]:
    """Tell the web tier what this batch changed (after the commit, so readers find the rows)."""
    return [await live.announce(redis, prefix, event) for event in result.live_events()]
