"""The fetcher: one cycle = one scoring run (snapshot → run row → context → header + records on the topic).

Only the leader worker ticks it (a Faust `on_leader` timer), once a second. A tick
  1. closes runs that outlived RUN_TIMEOUT (partial/failed, with counts),
  2. serves one pending fetch request (`request_fetch`: the CLI and the admin mutation), else
  3. starts a timer run when the last timer attempt is older than the profile's fetch interval.
A cycle whose fetch fails is recorded as a failed run with its reason; the next tick that is due retries.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from stream_app import live
from stream_app.contexts import store_context
from stream_app.records import ClusterContext, RunHeader, ValidatorRecord
from stream_app.rpc_fallback import read_fallback
from stream_app.runs import RunProgress, close_overdue_runs, fail_run, open_run, seconds_since_last_attempt
from stream_app.schedule import fetch_interval
from stream_app.scoring import SCORING_VERSION, build_cluster_context
from stream_app.settings import Settings
from stream_app.sources.parse import ParseFailure
from stream_app.sources.rpc import RpcClient
from stream_app.sources.snapshot import ClusterSnapshot, SourceState, fetch_cluster_snapshot

log = logging.getLogger(__name__)

Produce = Callable[[RunHeader, ClusterContext, Sequence[ValidatorRecord]], Awaitable[None]]
SWEEP_EVERY = 5.0  # seconds between overdue-run sweeps
TRIGGERS = ("timer", "cli", "admin")


def _metrics() -> Any:
    """The worker's metrics, imported on first use: `request_fetch` is also imported by the CLI and may be
    by the web tier, whose /metrics must not grow the worker's series."""
    from stream_app import metrics

    return metrics


def requests_key(prefix: str) -> str:
    return f"{prefix}:fetch:requests"


@dataclass(frozen=True)
class FetchRequest:
    run_id: str
    trigger: str
    actor: str | None
    requested_at: float

    def encode(self) -> bytes:
        return orjson.dumps({"run_id": self.run_id, "trigger": self.trigger, "actor": self.actor,
                             "requested_at": self.requested_at})

    @classmethod
    def decode(cls, raw: bytes | str) -> FetchRequest | None:
        try:
            data = orjson.loads(raw)
            request = cls(str(uuid.UUID(str(data["run_id"]))), str(data["trigger"]),
                          None if data.get("actor") is None else str(data["actor"]), float(data["requested_at"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return request if request.trigger in TRIGGERS else None


async def request_fetch(redis: aioredis.Redis, prefix: str, *, trigger: str = "cli",
                        actor: str | None = None) -> str:
    """Ask the leader worker for a fetch cycle now; returns the id the run will have."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}")
    request = FetchRequest(str(uuid.uuid4()), trigger, actor, time.time())
    await redis.lpush(requests_key(prefix), request.encode())
    return request.run_id


@dataclass
class CycleOutcome:
    run_id: str
    status: str  # running (records produced) | failed
    expected: int = 0
    error: str | None = None
    fetch_seconds: float = 0.0
    produce_seconds: float = 0.0


class Fetcher:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, produce: Produce,
                 *, rpc_urls: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.produce = produce
        self.rpc_urls = tuple(rpc_urls or settings.solana_rpc_urls)
        self.source_state = SourceState()
        self._last_attempt = 0.0
        self._last_sweep = 0.0

    async def tick(self) -> CycleOutcome | None:
        now = time.monotonic()
        if now - self._last_sweep >= SWEEP_EVERY:
            self._last_sweep = now
            await self.sweep()
        raw: Any = await self.redis.rpop(requests_key(self.settings.redis_prefix))
        if raw is not None:
            request = FetchRequest.decode(raw)
            if request is None:
                log.error("ignoring a malformed fetch request: %r", raw[:200])
                return None
            return await self.cycle(request.trigger, run_id=request.run_id, actor=request.actor)
        if await self.due():
            return await self.cycle("timer")
        return None

    async def due(self) -> bool:
        interval = await fetch_interval(self.redis, self.settings)  # `solstake schedule set` applies live
        if time.monotonic() - self._last_attempt < interval and self._last_attempt:
            return False
        async with self.pool.acquire() as conn:
            since = await seconds_since_last_attempt(conn)
        return since is None or since >= interval

    async def sweep(self) -> list[RunProgress]:
        async with self.pool.acquire() as conn:
            closed = await close_overdue_runs(conn, self.settings.run_timeout)
        _metrics().observe_runs(closed)
        for progress in closed:
            log.warning("run %s closed as %s after RUN_TIMEOUT (%d ok, %d failed of %d)", progress.run_id,
                        progress.status, progress.success_count, progress.fail_count, progress.validator_count,
                        extra={"run_id": progress.run_id, "phase": "sweep", "status": progress.status,
                               "progress": f"{progress.success_count + progress.fail_count}/"
                                           f"{progress.validator_count}"})
            await self._announce(progress.live_event())
        return closed

    async def snapshot(self, run_id: str) -> ClusterSnapshot:
        async with RpcClient(self.rpc_urls, timeout=self.settings.rpc_timeout,
                             max_retries=self.settings.rpc_max_retries,
                             max_response_bytes=self.settings.rpc_max_response_bytes) as rpc:
            return await fetch_cluster_snapshot(rpc, state=self.source_state, run_id=run_id)

    async def source_label(self, url: str) -> str:
        fallback = await read_fallback(self.redis, self.settings.redis_prefix)
        if fallback and str(fallback.get("url", "")).rstrip("/") == url.rstrip("/"):
            return "simulator"
        return url

    async def cycle(self, trigger: str, *, run_id: str | None = None, actor: str | None = None) -> CycleOutcome:
        """One scoring run. Never raises for an RPC problem: that becomes a failed run."""
        self._last_attempt = time.monotonic()
        run_id = run_id or str(uuid.uuid4())
        started = time.time()
        try:
            snap = await self.snapshot(run_id)
        except Exception as exc:  # any failure of the fetch is recorded, whatever raised it
            _metrics().observe_rpc_failure(exc)
            return await self._fail(run_id, f"fetch failed: {type(exc).__name__}: {exc}", trigger, actor, started)
        fetched = time.time()
        if not snap.records:
            return await self._fail(run_id, "the RPC returned no usable vote accounts", trigger, actor, started)
        records = [r if r.run_id == run_id else replace(r, run_id=run_id) for r in snap.records]
        try:
            header = snap.header(trigger=trigger, source=await self.source_label(snap.source))
            unusable = unusable_vote_accounts(snap.failures, {r.vote_pubkey for r in records})
            # The run covers the whole cluster: accounts the RPC sent but we could not use are failures of it.
            header = replace(header, expected_count=len(records) + len(unusable))
            context = build_cluster_context(run_id, snap.epoch, snap.slot, snap.epoch_info.slot_index,
                                            snap.epoch_info.slots_in_epoch, records, observed_at=snap.observed_at)
            await store_context(self.redis, self.settings.redis_prefix, context,
                                ttl_seconds=int(max(86_400, 4 * self.settings.run_timeout)))
            async with self.pool.acquire() as conn, conn.transaction():
                await open_run(conn, header, context, actor=actor or "system:pipeline",
                               scoring_version=SCORING_VERSION, fetched_at=fetched)
                await record_unusable(conn, run_id, unusable)
        except Exception as exc:  # whatever broke between fetch and produce, the run says so
            reason = f"preparing the run failed: {type(exc).__name__}: {exc}"
            return await self._fail(run_id, reason, trigger, actor, started, expected=len(records))
        await self._announce({"type": "run", "run_id": run_id, "status": "running", "success_count": 0,
                              "fail_count": 0, "validator_count": header.expected_count})
        if snap.failures or snap.warnings:
            log.warning("run %s: %d vote accounts unusable, warnings: %s", run_id, len(snap.failures),
                        "; ".join(snap.warnings) or "none", extra={"run_id": run_id, "phase": "fetch"})
        try:
            await self.produce(header, context, records)
        except Exception as exc:
            reason = f"producing records failed: {type(exc).__name__}: {exc}"
            return await self._fail(run_id, reason, trigger, actor, started, expected=len(records))
        produced = time.time()
        log.info("run %s: %d records on the stream (fetch %.2f s, produce %.2f s, epoch %d, source %s)", run_id,
                 len(records), fetched - started, produced - fetched, header.epoch, header.source,
                 extra={"run_id": run_id, "phase": "fetch", "trigger": trigger, "records": len(records),
                        "epoch": header.epoch, "source": header.source})
        return CycleOutcome(run_id, "running", len(records), None, fetched - started, produced - fetched)

    async def _fail(self, run_id: str, reason: str, trigger: str, actor: str | None, started: float,
                    *, expected: int = 0) -> CycleOutcome:
        log.error("run %s failed: %s", run_id, reason, extra={"run_id": run_id, "phase": "fetch", "trigger": trigger})
        async with self.pool.acquire() as conn:
            progress = await fail_run(conn, run_id, reason, trigger=trigger, source=",".join(self.rpc_urls),
                                      started_at=started, actor=actor or "system:pipeline")
        _metrics().observe_runs([progress])
        await self._announce(progress.live_event())
        return CycleOutcome(run_id, "failed", expected, reason, time.time() - started)

    async def _announce(self, event: dict[str, Any]) -> None:
        try:
            await live.announce(self.redis, self.settings.redis_prefix, event)
        except Exception as exc:  # announcements are advisory; the database is the record
            log.warning("could not announce %s: %s", event.get("type"), exc)


def unusable_vote_accounts(failures: Sequence[ParseFailure], scored: set[str]) -> list[tuple[str, str]]:
    """(vote account, reason) for each vote account the parser refused, once each.

    A refused entry whose key is also among the usable records (a repeated pubkey) is not a separate
    validator and is left out; an entry with no readable key gets a stable placeholder key.
    """
    out: dict[str, str] = {}
    for index, failure in enumerate(failures):
        if failure.what != "vote_account":
            continue
        key = failure.key or f"<unreadable vote account #{index}>"
        if key in scored or key in out:
            continue
        out[key] = failure.reason
    return list(out.items())


async def record_unusable(conn: asyncpg.Connection, run_id: str, unusable: Sequence[tuple[str, str]]) -> None:
    if not unusable:
        return
    await conn.executemany(
        "INSERT INTO scoring_failures (scoring_run_id, vote_account, error) VALUES ($1::uuid, $2, $3) "
        "ON CONFLICT (scoring_run_id, vote_account) DO NOTHING",
        [(run_id, key, f"unusable RPC data: {reason}"[:2000]) for key, reason in unusable],
    )
