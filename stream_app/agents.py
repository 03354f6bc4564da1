"""The Faust agents and the leader's fetch timer, wired to their resources.

    validator-records ──score_validators──► trust-scores ──persist_scores──► PostgreSQL (+ live stream)
                      (table validator-state)

`persist_scores` acknowledges a batch only after PostgreSQL committed it (`noack_take`), retries a failed
write until it succeeds, and on shutdown lets the in-flight write finish before the final commit: the
sink is idempotent, so the worst case anywhere is a replay, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from stream_app import metrics, poison, runlog
from stream_app.app import StreamApp
from stream_app.contexts import ContextCache
from stream_app.db import create_pool
from stream_app.fetch_process import ProcessFetcher
from stream_app.fetcher import Fetcher
from stream_app.messages import (
    HeaderMessage,
    MessageError,
    decode_score,
    decode_validator_message,
    encode_header,
    encode_record,
    encode_score,
    identify,
)
from stream_app.records import ClusterContext, RunHeader, ScoreEvent, ValidatorRecord
from stream_app.scoring_step import failed_event, score_step
from stream_app.settings import Settings
from stream_app.sinks.postgres import PersistResult, announce, persist_scores

log = logging.getLogger(__name__)

PERSIST_BATCH = 2000
PERSIST_WITHIN = 0.25  # seconds: a partial batch is written after this long
SHUTDOWN_GRACE = 20.0  # seconds an in-flight write may take once the worker is asked to stop
RETRY_CAP = 5.0
PRODUCE_WINDOW = 2000  # records queued on the producer before waiting for Redis to take them
# Labelled children resolved once: `.labels()` per record costs more than the increment.
_SCORED_OK = metrics.RECORDS_SCORED.labels("ok")
_SCORED_FAILED = metrics.RECORDS_SCORED.labels("failed")


@dataclass
class Resources:
    pool: asyncpg.Pool
    redis: aioredis.Redis


class Pipeline:
    """Resources are opened lazily, on the worker's event loop."""

    def __init__(self, settings: Settings, database_url: str, redis_url: str, stream: StreamApp) -> None:
        self.settings = settings
        self.database_url = database_url
        self.redis_url = redis_url
        self.stream = stream
        self._resources: Resources | None = None
        self._lock = asyncio.Lock()
        self._contexts: ContextCache | None = None
        self._fetcher: Fetcher | None = None
        self._tick: asyncio.Future[None] | None = None
        self._declared: set[str] = set()

    async def resources(self) -> Resources:
        async with self._lock:
            if self._resources is None:
                pool = await create_pool(self.database_url, self.settings)
                metrics.track_pool(pool)  # solstake_db_pool_* on the worker's /metrics
                redis = aioredis.from_url(self.redis_url)
                self._resources = Resources(pool, redis)
                self._contexts = ContextCache(redis, self.settings.redis_prefix)
            return self._resources

    async def close(self) -> None:
        if self._resources is not None:
            await self._resources.pool.close()
            await self._resources.redis.aclose()
            self._resources = None

    async def contexts(self) -> ContextCache:
        await self.resources()
        assert self._contexts is not None
        return self._contexts

    # --- fetch (leader only) ---------------------------------------------------------------------------

    async def produce(self, header: RunHeader, context: ClusterContext, records: Sequence[ValidatorRecord]) -> None:
        header_bytes = encode_header(header, context)
        for partition in range(self.settings.stream_partitions):
            await self.send(self.stream.records, None, header_bytes, partition)
        for index, record in enumerate(records, start=1):
            await self.send(self.stream.records, record.vote_pubkey.encode(), encode_record(record))
            if index % PRODUCE_WINDOW == 0:
                await self.stream.app.producer.flush()  # backpressure: bounded encoded records in memory
        await self.stream.app.producer.flush()
        metrics.RECORDS_PRODUCED.inc(len(records))

    async def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            res = await self.resources()
            # Each cycle in a short-lived child process: the snapshot's memory never lands in the worker.
            self._fetcher = ProcessFetcher(self.settings, res.pool, res.redis, database_url=self.database_url,
                                           redis_url=self.redis_url)
        return self._fetcher

    def fetch_tick_soon(self) -> None:
        """Start a tick unless one is still running (a cycle can outlast the 1 s timer)."""
        if self._tick is None or self._tick.done():
            self._tick = asyncio.ensure_future(self.fetch_tick())

    async def fetch_tick(self) -> None:
        try:
            fetcher = await self.fetcher()
            outcome = await fetcher.tick()
        except Exception:  # a dead PostgreSQL/Redis must not kill the timer; the next tick retries
            log.exception("fetch tick failed")
            return
        if outcome is not None:
            metrics.RUNS.labels(outcome.status).inc()
            metrics.FETCH_SECONDS.observe(outcome.fetch_seconds)

    async def send(self, topic: Any, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Queue one message on the app's producer, below Faust's per-message Topic.send machinery.

        8x cheaper per record than `topic.send` (measured: 0.015 vs 0.14 ms CPU), same guarantees: the
        producer keeps per-partition order and Faust flushes it before every offset commit. It is the
        generic Faust Producer API, so Kafka brokers work unchanged.
        """
        if topic.get_topic_name() not in self._declared:
            await topic.maybe_declare()
            self._declared.add(topic.get_topic_name())
        await self.stream.app.producer.send(topic.get_topic_name(), key, value, partition, None, None)

    # --- score_validators -----------------------------------------------------------------------------

    async def score(self, key: bytes | None, value: Any) -> ScoreEvent | None:
        """Score one message of validator-records; returns the event to send (None for headers)."""
        try:
            message = decode_validator_message(value)
        except MessageError as exc:
            metrics.BAD_MESSAGES.labels("validator-records").inc()
            ids = identify(value)
            if ids is None:
                log.error("unreadable validator-records message (key %r): %s", key, exc,
                          extra={"phase": "score", "validator": _text(key)})
                await self.stream.dead_letters.send(key=key, value=value if isinstance(value, bytes) else None)
                return None
            log.warning("malformed record of validator %s in run %s: %s", ids[1], ids[0], exc,
                        extra={"phase": "score", "run_id": ids[0], "validator": ids[1]})
            return failed_event(ids[0], ids[1], f"malformed record: {exc}")
        contexts = await self.contexts()
        if isinstance(message, HeaderMessage):
            contexts.put(message.context)
            return None
        record = message
        context = await contexts.get(record.run_id)
        table = self.stream.state
        state_key = record.vote_pubkey.encode()
        new_state, event = score_step(table.get(state_key), record, context)
        if event.failed:
            log.warning("scoring validator %s failed in run %s: %s", record.vote_pubkey, record.run_id, event.error,
                        extra={"phase": "score", "run_id": record.run_id, "validator": record.vote_pubkey})
        if new_state is not None:
            table[state_key] = new_state
        (_SCORED_FAILED if event.failed else _SCORED_OK).inc()
        return event

    # --- persist_scores -------------------------------------------------------------------------------

    def decode_scores(self, values: Sequence[Any]) -> list[ScoreEvent]:
        events = []
        for value in values:
            try:
                events.append(decode_score(value))
            except MessageError as exc:
                metrics.BAD_MESSAGES.labels("trust-scores").inc()
                log.error("unreadable trust-scores message dropped: %s", exc)
        return events

    async def persist_until_done(self, events: list[ScoreEvent]) -> PersistResult:
        delay = 0.2
        refused = 0  # refusals in a row of this batch's data (not outages): see stream_app/poison.py
        while True:
            try:
                res = await self.resources()
                started = time.perf_counter()
                result = await persist_scores(res.pool, events)
                elapsed = time.perf_counter() - started
                metrics.PERSIST_SECONDS.observe(elapsed)
                log.debug("wrote %d score events in %.3f s", len(events), elapsed)
                metrics.SCORES_PERSISTED.inc(result.stored)
                metrics.observe_runs(result.runs)
                runlog.batch_written(result)
                return result
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as exc:
                metrics.PERSIST_RETRIES.inc()
                log.error("writing %d scores failed (%s: %s); retrying in %.1f s", len(events),
                          type(exc).__name__, exc, delay)
                refused = refused + 1 if poison.is_refusal(exc) else 0
                if refused >= poison.POISON_TRIES:
                    return await poison.isolate(self.persist_until_done, self.dead_letter, events, exc)
                await asyncio.sleep(delay)
                delay = min(RETRY_CAP, delay * 2)

    async def dead_letter(self, event: ScoreEvent) -> None:
        await self.send(self.stream.dead_letters, event.vote_pubkey.encode(), encode_score(event))

    async def announce(self, result: PersistResult) -> None:
        try:
            res = await self.resources()
            await announce(res.redis, self.settings.redis_prefix, result)
        except Exception as exc:  # announcements are advisory; the rows are committed
            log.warning("live announcement failed: %s", exc)


def register(stream: StreamApp, pipeline: Pipeline) -> None:
    """Attach the agents and the leader timer to the app."""
    app = stream.app

    @app.agent(stream.records, name="score_validators")
    async def score_validators(records: Any) -> None:
        async for event in records.events():
            out = await pipeline.score(event.key, event.value)
            if out is not None:
                await pipeline.send(stream.scores, out.vote_pubkey.encode(), encode_score(out))

    @app.agent(stream.scores, name="persist_scores")
    async def persist_scores_agent(scores: Any) -> None:
        async for batch in scores.noack_take(PERSIST_BATCH, within=PERSIST_WITHIN):
            events = pipeline.decode_scores([e.value for e in batch])
            if not events:
                await _ack(scores, batch)
                continue
            write = asyncio.ensure_future(pipeline.persist_until_done(events))
            try:
                result = await asyncio.shield(write)
            except asyncio.CancelledError:
                # Stopping: let the in-flight write finish so the final commit can include it.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(write, SHUTDOWN_GRACE)
                if write.done() and not write.cancelled() and write.exception() is None:
                    await _ack(scores, batch)
                raise
            await _ack(scores, batch)
            await pipeline.announce(result)

    @app.timer(1.0, on_leader=True, name="fetch_cycle")
    async def fetch_cycle() -> None:
        pipeline.fetch_tick_soon()


def _text(key: Any) -> str | None:
    if isinstance(key, bytes):
        return key.decode(errors="replace")[:64]
    return None if key is None else str(key)[:64]


async def _ack(stream: Any, batch: Sequence[Any]) -> None:
    for event in batch:
        await stream.ack(event)
