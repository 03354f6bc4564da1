"""The Faust agent and the leader's fetch timer, wired to their resources.

    validator-records ──score_validators──► PostgreSQL ──► live stream, trust-scores
                      (table validator-state)

`score_validators` takes records in batches of what is ready (`ready_batches`): it scores a batch (the
table's changelog gets each new state), writes the batch's scores to PostgreSQL in one transaction and
acknowledges the records only after that commit (acks are manual), so an offset is never committed before
its scores are stored. Writes run beside the scoring, one at a time (`BatchWriter`: batches commit and
acknowledge in order; batches scored during a write are merged into the next one). A failed write is
retried until it succeeds; on shutdown the writes of what was scored may finish before the final commit.
The sink is idempotent, so the worst case anywhere is a replay, never a loss. After the commit the batch is
announced on the live stream and each stored score, with its breakdown, goes to `trust-scores` for
consumers outside this app (nothing here reads it back), once no write is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from faust.streams import _current_event as _CURRENT_EVENT

from stream_app import metrics, poison, runlog
from stream_app.app import StreamApp
from stream_app.contexts import ContextCache
from stream_app.db import create_pool
from stream_app.fetch_process import ProcessFetcher
from stream_app.fetcher import Fetcher
from stream_app.messages import (
    HeaderMessage,
    MessageError,
    decode_validator_message,
    encode_header,
    encode_record,
    encode_score,
    identify,
)
from stream_app.records import ClusterContext, RunHeader, ScoreEvent, ValidatorRecord
from stream_app.scoring_step import DecodedStates, failed_event, score_step
from stream_app.settings import Settings
from stream_app.sinks.postgres import PersistResult, announce, persist_scores
from stream_app.state_table import StateTable

log = logging.getLogger(__name__)

SCORE_BATCH = 1000  # records scored, then written to PostgreSQL in one transaction
# Records scored between two turns of the event loop: scoring never suspends on its own, so without these
# turns each PostgreSQL round trip of the write in flight waited for the whole batch (~0.15 s per 1,000).
YIELD_EVERY = 64
SHUTDOWN_GRACE = 20.0  # seconds the writes of scored batches may take once the worker is asked to stop
WRITE_AT_MOST = 2000  # events merged into one transaction when batches wait for the writer
MAX_PENDING = 1000  # scored events waiting for the writer; more make scoring wait for it
PUBLISH_AT_LEAST = 1000  # stored scores held back from trust-scores while writes are waiting
GC_YOUNG = 20_000  # allocations between young collections (Python's default: 700)
DECODED_STATES = 4096  # validators whose decoded scoring state is kept (~2 KB each); mainnet has ~2,000
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
        self._scored = [0, 0]  # records scored [ok, failed] since the last count_scored()
        self._decoded = DecodedStates(DECODED_STATES)
        self._state = StateTable(stream.state)

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
        await self.stream.app.producer.send(await self._declared_name(topic), key, value, partition, None, None)

    async def _declared_name(self, topic: Any) -> str:
        name: str = topic.get_topic_name()
        if name not in self._declared:
            await topic.maybe_declare()
            self._declared.add(name)
        return name

    # --- score_validators -----------------------------------------------------------------------------

    async def score(self, key: bytes | None, value: Any, contexts: ContextCache, source: Any) -> ScoreEvent | None:
        """Score one message of validator-records (`source`: its stream event); returns the event to send
        (None for headers)."""
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
        if isinstance(message, HeaderMessage):
            contexts.put(message.context)
            return None
        record = message
        context = await contexts.get(record.run_id)
        state_key = record.vote_pubkey.encode()
        new_state, event = score_step(self._state.get(state_key), record, context, self._decoded)
        if event.failed:
            log.warning("scoring validator %s failed in run %s: %s", record.vote_pubkey, record.run_id, event.error,
                        extra={"phase": "score", "run_id": record.run_id, "validator": record.vote_pubkey})
        if new_state is not None:
            self._state.set(state_key, new_state, source)
        self._scored[event.failed] += 1
        return event

    async def score_batch(self, batch: Sequence[Any]) -> list[ScoreEvent]:
        """Score a batch of validator-records events in order; the score events to persist."""
        out = []
        contexts = await self.contexts()
        token = _CURRENT_EVENT.set(None)
        try:
            for index, event in enumerate(batch, 1):
                if index % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # the write in flight and the consumer go on while a batch is scored
                # The table sends each state change to the changelog partition of `faust.current_event()`:
                # make that this record's event, in this task only. (Not `Stream._set_current_event`: it also
                # sets the stream's attribute, which the stream's own iteration in `ready_batches` owns.) Only
                # StateTable's fallback to `table[key] = value` reads it.
                _CURRENT_EVENT.set(weakref.ref(event))
                scored = await self.score(event.key, event.value, contexts, event)
                if scored is not None:
                    out.append(scored)
        finally:
            _CURRENT_EVENT.reset(token)
            self.count_scored()
        return out

    def count_scored(self) -> None:
        """RECORDS_SCORED once per batch (`inc` takes a lock)."""
        ok, failed = self._scored
        self._scored = [0, 0]
        if ok:
            _SCORED_OK.inc(ok)
        if failed:
            _SCORED_FAILED.inc(failed)

    # --- persisting -----------------------------------------------------------------------------------

    async def commit_batch(self, records: Any, batch: Sequence[Any], events: list[ScoreEvent]) -> None:
        """Write a scored batch, then acknowledge its records (only once PostgreSQL committed) and tell."""
        if events:
            result = await self.persist_until_done(events)
        await _ack(records, batch)
        if events:
            await self.announce(result)

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
            # InternalClientError: asyncpg's protocol state broke when the server went away mid-statement
            # (seen releasing the connection during a PostgreSQL shutdown); the pool drops that connection.
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                    TimeoutError) as exc:
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

    async def publish_scores(self, events: Sequence[ScoreEvent]) -> None:
        """Each stored score with its full breakdown on trust-scores, for consumers outside this app."""
        if not events:
            return
        name = await self._declared_name(self.stream.scores)
        send = self.stream.app.producer.send
        for index, event in enumerate(events, 1):
            if index % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a write in flight beside it goes on (see BatchWriter._run)
            await send(name, event.vote_pubkey.encode(), encode_score(event), None, None, None)

    async def announce(self, result: PersistResult) -> None:
        try:
            res = await self.resources()
            await announce(res.redis, self.settings.redis_prefix, result)
        except Exception as exc:  # announcements are advisory; the rows are committed
            log.warning("live announcement failed: %s", exc)


def register(stream: StreamApp, pipeline: Pipeline) -> None:
    """Attach the agent and the leader timer to the app."""
    app = stream.app

    @app.agent(stream.records, name="score_validators")
    async def score_validators(records: Any) -> None:
        writer = BatchWriter(pipeline, records)
        _settle_gc()
        try:
            async for batch in ready_batches(records, SCORE_BATCH):
                events = await pipeline.score_batch(batch)
                await writer.add(batch, events)
        except asyncio.CancelledError:
            # Stopping: let the writes of what was scored finish (they acknowledge their batches) before
            # the final commit.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer.drain()), SHUTDOWN_GRACE)
            raise

    @app.timer(1.0, on_leader=True, name="fetch_cycle")
    async def fetch_cycle() -> None:
        pipeline.fetch_tick_soon()


async def ready_batches(records: Any, size: int) -> AsyncIterator[list[Any]]:
    """The stream's events in batches of what is ready: a batch is handed over once it holds `size` events or
    no further event is waiting in the stream's queue, never after a timer. (Faust's `noack_take` waits up to
    its `within` for a full batch: a run's last batch always waited it out, and while a write's CPU work ran
    the window closed on a partial batch with hundreds of records still queued.) Acks are manual, as with
    `noack_take`: the writer acknowledges each event once its score is committed."""
    queue = records.channel.queue
    records.enable_acks = False
    batch: list[Any] = []
    async for event in records.events():
        batch.append(event)
        if len(batch) >= size or not queue.qsize():
            yield batch
            batch = []


class BatchWriter:
    """Writes scored batches to PostgreSQL in order, one transaction at a time, beside the scoring.

    Batches scored while a write is in flight wait and go together in the next transaction (up to
    WRITE_AT_MOST events), so a burst of small batches costs one transaction, not one each, and the agent
    never stops scoring to wait for PostgreSQL unless more than MAX_PENDING scored events are unwritten
    (exactly MAX_PENDING, a full batch, does not stop it: a run's few last records then join that batch's
    write instead of waiting for it and costing a transaction of their own).
    Stored scores go to trust-scores once no write is waiting, or beside the next write once
    PUBLISH_AT_LEAST are held, so writes come first; they stay in commit order.
    """

    def __init__(self, pipeline: Pipeline, records: Any) -> None:
        self.pipeline = pipeline
        self.records = records
        self.pending: list[tuple[Sequence[Any], list[ScoreEvent]]] = []
        self.pending_events = 0
        self.unpublished: list[ScoreEvent] = []
        self.task: asyncio.Future[None] | None = None
        self.room = asyncio.Event()

    async def add(self, batch: Sequence[Any], events: list[ScoreEvent]) -> None:
        if self.task is not None and self.task.done():
            self.task.result()  # a failed writer raises through the agent
        self.pending.append((batch, events))
        self.pending_events += len(events)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
            self.task.add_done_callback(_report_failed_write)
        while self.pending_events > MAX_PENDING and not self.task.done():
            self.room.clear()
            await self.room.wait()

    async def drain(self) -> None:
        if self.task is not None:
            await self.task

    async def _run(self) -> None:
        try:
            while self.pending:
                batches, events = self._take()
                self.room.set()
                publishing: asyncio.Future[None] | None = None
                if len(self.unpublished) >= PUBLISH_AT_LEAST:
                    # Beside this write (it mostly waits for PostgreSQL), not before it: a write that ends a
                    # run waited ~40 ms for 2,000 scores to be encoded and queued.
                    held, self.unpublished = self.unpublished, []
                    publishing = asyncio.ensure_future(self.pipeline.publish_scores(held))
                try:
                    await self.pipeline.commit_batch(self.records, batches, events)
                finally:
                    if publishing is not None:
                        await publishing
                self.unpublished.extend(events)
                if not self.pending:
                    unpublished, self.unpublished = self.unpublished, []
                    await self.pipeline.publish_scores(unpublished)
        finally:
            self.room.set()  # a waiting agent sees the writer gone (and its failure, if any)

    def _take(self) -> tuple[list[Any], list[ScoreEvent]]:
        batches: list[Any] = []
        events: list[ScoreEvent] = []
        while self.pending and (not events or len(events) + len(self.pending[0][1]) <= WRITE_AT_MOST):
            batch, scored = self.pending.pop(0)
            batches.extend(batch)
            events.extend(scored)
            self.pending_events -= len(scored)
        return batches, events


def _settle_gc() -> None:
    """Keep the cyclic GC off what the worker built to start (modules, the Faust app): frozen, a full
    collection no longer walks it (measured: ~0.1 s of CPU per 2,000-record run, one in eight of the
    worker's). Young collections every GC_YOUNG allocations instead of 700: a scored batch allocates a few
    hundred thousand short-lived objects, and each collection walks the ScoreEvents still waiting for
    their write."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 20)


def _report_failed_write(write: asyncio.Future[None]) -> None:
    """The next batch raises a failed write through the agent; the last one would otherwise go unseen."""
    if not write.cancelled() and write.exception() is not None:
        log.error("writing a scored batch failed; its records stay unacknowledged", exc_info=write.exception())


def _text(key: Any) -> str | None:
    if isinstance(key, bytes):
        return key.decode(errors="replace")[:64]
    return None if key is None else str(key)[:64]


async def _ack(stream: Any, batch: Sequence[Any]) -> None:
    for event in batch:
        await stream.ack(event)
