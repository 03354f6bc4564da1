"""Consumer: reads the assigned partition streams with one `XREAD BLOCK`, runs on the app's event loop.

Positions are plain integers (the next offset to read); `None` means "resolve lazily" from the group's
committed offset, or `consumer_auto_offset_reset` when there is none or it is past the highwater.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

from faust.transport import consumer as base
from faust.types import TP, ConsumerMessage
from faust.types.transports import ConsumerT
from mode import Seconds, ServiceT

from .coordinator import GroupCoordinator
from .delivery import LeanDelivery
from .eager import start_eagerly
from .janitor import Janitor
from .keys import parse_tp_field, tp_field
from .producer import CONNECTION_ERRORS, decode_headers
from .recovery import LeanRecovery

if TYPE_CHECKING:
    from .transport import Transport

log = logging.getLogger(__name__)

#: XREAD BLOCK bound (ms) while some assigned partitions are paused by stream-buffer backpressure.
PAUSED_BLOCK_MS = 20


def entry_offset(entry_id: bytes) -> int:
    """`b"42-1"` -> 42 (the millisecond part of the stream id is the offset)."""
    return int(entry_id.partition(b"-")[0])


class Consumer(base.Consumer):
    transport: Transport
    consumer_stopped_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, transport: Any, callback: Any, on_partitions_revoked: Any, on_partitions_assigned: Any,
                 **kwargs: Any) -> None:
        super().__init__(transport, callback, on_partitions_revoked, on_partitions_assigned, **kwargs)
        conf = self.app.conf
        self.coordinator = GroupCoordinator(
            self,
            self.transport.group_keys,
            session_timeout=float(conf.broker_session_timeout),
            heartbeat_interval=min(float(conf.broker_heartbeat_interval), float(conf.broker_session_timeout) / 3),
            rebalance_timeout=float(conf.broker_rebalance_timeout),
        )
        self.janitor = Janitor(self.transport)
        self._positions: dict[TP, int | None] = {}
        self._highwaters: dict[TP, int] = {}
        self._client_only_topics: set[str] = set()
        self._backoff = 0.0
        self.offset_resets = 0
        self._buffer_drained = asyncio.Event()
        self._pressured_changelogs: set[TP] = set()
        self.lean_recovery = LeanRecovery(self) if self.transport.options.lean_recovery else None
        self.lean_delivery = LeanDelivery(self) if self.transport.options.lean_delivery else None

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def on_start(self) -> None:
        self.transport.active_consumer = self

    async def on_stop(self) -> None:
        await super().on_stop()  # waits for streams to finish and commits
        await self.coordinator.leave()
        if self.transport.active_consumer is self:
            self.transport.active_consumer = None

    def close(self) -> None:
        self.coordinator._stopping = True

    async def subscribe(self, topics: Iterable[str]) -> None:
        topic_set = set(topics)
        client = self.transport.client
        for topic in sorted(topic_set):
            await self._with_retry(lambda t=topic: self.transport.registry.config(client, t), "topic registry")
        if self.app.client_only:
            self._client_only_topics = topic_set
            return
        first = not self.coordinator.registered
        await self.coordinator.set_subscription(topic_set)
        if first:  # the rebalance runs in its own task: App waits for subscribe() to return first
            self.add_future(self.coordinator.heartbeat_loop())
            self.add_future(self.coordinator.rebalance_loop())
            self.add_future(self.janitor.run(self.assignment))

    # --- assignment and positions ----------------------------------------------------------------------

    def assignment(self) -> set[TP]:
        if self.app.client_only:
            return self._client_only_assignment()
        return set(self.coordinator.assignment)

    def _client_only_assignment(self) -> set[TP]:
        registry = self.transport.registry
        return {TP(t, p) for t in self._client_only_topics for p in range(registry.cached_partitions(t) or 0)}

    def forget_positions(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._positions.pop(tp, None)

    async def _seek(self, partition: TP, offset: int) -> None:
        self._positions[partition] = offset

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        read_offset = self._read_offset
        for tp, offset in partitions.items():
            self._positions[tp] = max(offset, 0)
            if offset > 0:
                read_offset[tp] = offset
            else:
                read_offset.pop(tp, None)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        tps = sorted(self.assignment())
        committed = await self._with_retry(lambda: self._committed(tps), "seek_to_committed")
        result: dict[TP, Any] = {}
        for tp, offset in committed.items():
            if offset is not None and offset > 0:
                self._positions[tp] = offset
            result[tp] = offset
        return cast(Mapping[TP, int], result)

    async def _committed(self, tps: list[TP]) -> dict[TP, int | None]:
        """Committed offsets, with `committed > highwater` (data loss) reset by auto_offset_reset."""
        if not tps:
            return {}
        raw = await self.transport.client.hmget(self.transport.group_keys.offsets, [tp_field(tp) for tp in tps])
        committed = {tp: int(v) if v is not None else None for tp, v in zip(tps, raw, strict=True)}
        highwaters = await self._read_highwaters(tps)
        for tp, offset in committed.items():
            if offset is not None and offset > highwaters[tp]:
                reset = await self._reset_offset(tp, highwaters[tp])
                self.offset_resets += 1
                log.error("committed offset %d of %s is past its highwater %d (data lost in Redis?); "
                          "auto_offset_reset=%s -> %d", offset, tp, highwaters[tp],
                          self.app.conf.consumer_auto_offset_reset, reset)
                committed[tp] = reset
        return committed

    async def _reset_offset(self, tp: TP, highwater: int) -> int:
        if self.app.conf.consumer_auto_offset_reset == "latest":
            return highwater
        return (await self._read_earliest([tp]))[tp]

    async def _resolve_positions(self, tps: list[TP]) -> None:
        missing = [tp for tp in tps if self._positions.get(tp) is None]
        if not missing:
            return
        committed = await self._committed(missing)
        for tp in missing:
            offset = committed.get(tp)
            if offset is None:
                offset = await self._reset_offset(tp, (await self._read_highwaters([tp]))[tp])
            if self._positions.get(tp) is None:
                self._positions[tp] = offset

    # --- offsets of the log ------------------------------------------------------------------------------

    async def _read_highwaters(self, tps: Iterable[TP]) -> dict[TP, int]:
        tps = list(tps)
        if not tps:
            return {}
        keys = self.transport.keys
        raw = await self.transport.client.mget([keys.counter(tp.topic, tp.partition) for tp in tps])
        result = {tp: int(v) if v is not None else 0 for tp, v in zip(tps, raw, strict=True)}
        self._highwaters.update(result)
        return result

    async def _read_earliest(self, tps: Iterable[TP]) -> dict[TP, int]:
        tps = list(tps)
        keys = self.transport.keys
        async with self.transport.client.pipeline(transaction=False) as pipe:
            for tp in tps:
                pipe.xrange(keys.stream(tp.topic, tp.partition), "-", "+", count=1)
            firsts = await pipe.execute()
        highwaters = await self._read_highwaters(tps)
        return {tp: entry_offset(first[0][0]) if first else highwaters[tp]
                for tp, first in zip(tps, firsts, strict=True)}

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        return await self._with_retry(lambda: self._read_highwaters(partitions), "highwaters")

    async def earliest_offsets(self, *partitions: TP) -> Mapping[TP, int]:
        return await self._with_retry(lambda: self._read_earliest(partitions), "earliest_offsets")

    def highwater(self, tp: TP) -> int:
        return self._highwaters.get(tp, 0)

    async def position(self, tp: TP) -> int | None:
        return self._positions.get(tp)

    def topic_partitions(self, topic: str) -> int | None:
        return self.transport.registry.cached_partitions(topic)

    def key_partition(self, topic: str, key: bytes | None, partition: int | None = None) -> int | None:
        if partition is not None:
            return partition
        if key is None:
            return None
        return self.app.producer.key_partition(topic, key).partition

    async def create_topic(
        self,
        topic: str,
        partitions: int,
        replication: int,
        *,
        config: Mapping[str, Any] | None = None,
        timeout: Seconds = 30.0,  # noqa: ASYNC109 - Faust's signature
        retention: Seconds | None = None,
        compacting: bool | None = None,
        deleting: bool | None = None,
        ensure_created: bool = False,
    ) -> None:
        await self.app.producer.create_topic(topic, partitions, replication, config=config, timeout=timeout,
                                             retention=retention, compacting=compacting, deleting=deleting,
                                             ensure_created=ensure_created)

    def _new_topicpartition(self, topic: str, partition: int) -> TP:
        return TP(topic, partition)

    # --- fetching ------------------------------------------------------------------------------------------

    async def _getmany(
        self, active_partitions: set[TP] | None, timeout: float  # noqa: ASYNC109 - Faust's signature
    ) -> Mapping[TP, list[Any]]:
        if not self.flow_active:
            return {}
        if active_partitions is None:
            active_partitions = self._client_only_assignment()
        assigned = self.assignment()
        tps = sorted(tp for tp in active_partitions if tp in assigned)
        if not tps:
            await asyncio.sleep(min(timeout, 0.2))
            return {}
        if self._backoff:
            await asyncio.sleep(self._backoff)
        try:
            await self._resolve_positions(tps)
            records = await self._read(tps, timeout)
        except CONNECTION_ERRORS as exc:
            self._backoff = min(max(self._backoff * 2, 0.1), 2.0)
            log.warning("fetch failed, Redis unreachable (%r); backing off %.1fs", exc, self._backoff)
            return {}
        self._backoff = 0.0
        return records

    async def _read(self, tps: list[TP], timeout: float) -> dict[TP, list[ConsumerMessage]]:  # noqa: ASYNC109
        keys = self.transport.keys
        options = self.transport.options
        # positions may have been dropped by a rebalance while we awaited
        requested = {tp: pos for tp in tps if (pos := self._positions.get(tp)) is not None}
        if not requested:
            return {}
        tps = list(requested)
        by_key = {keys.stream(tp.topic, tp.partition).encode(): tp for tp in tps}
        streams: Any = {keys.stream(tp.topic, tp.partition): f"{requested[tp]}-0" for tp in tps}
        generation = self.app.consumer_generation_id
        block = max(1, min(int(timeout * 1000), options.block_ms))
        if self._buffered_partitions:
            # Partitions paused because their stream buffer is full resume from `on_buffer_drop`, which a
            # blocked XREAD cannot notice: while any are paused, poll the others (often only empty ones such
            # as the assignor's leader topic) briefly instead of stalling the paused ones for `block_ms`.
            block = min(block, PAUSED_BLOCK_MS)
        # the transport's client returns XREAD replies raw (`Transport._new_client`): parsed straight into messages
        reply: Any = await self.transport.client.xread(streams, count=options.fetch_count, block=block)
        records: dict[TP, list[ConsumerMessage]] = {}
        if not reply:
            return records
        stamp = self.app.consumer_generation_id  # what getmany stamps them with, unless it changes
        assigned = self.assignment()
        lean = self.lean_recovery
        for key, entries in (reply.items() if isinstance(reply, dict) else reply):  # RESP3 map or RESP2 pairs
            tp = by_key[key]
            # a revoke or a seek while XREAD was blocked makes this batch stale
            if not entries or tp not in assigned or self._positions.get(tp) != requested[tp]:
                continue
            batch = [_message(tp, entry_id, fields, stamp) for entry_id, fields in entries]
            last = batch[-1].offset
            self._positions[tp] = last + 1
            if last + 1 > self._highwaters.get(tp, 0):
                self._highwaters[tp] = last + 1
            if lean is not None and (channel := self._lean_target(tp, generation)) is not None:
                await lean.apply_batch(tp, channel, batch)
            else:
                records[tp] = batch
        return records

    def _lean_target(self, tp: TP, generation: int) -> Any | None:
        """The changelog channel when `tp`'s batch goes to lean recovery (getmany's own checks first)."""
        lean = self.lean_recovery
        if lean is None or not self.flow_active or self.app.consumer_generation_id != generation:
            return None
        if tp not in self._get_active_partitions() and tp not in self._buffered_partitions:
            return None
        return lean.target(tp)

    def on_buffer_full(self, tp: TP) -> None:
        super().on_buffer_full(tp)
        if tp.topic in self._changelog_topics():
            self._pressured_changelogs.add(tp)

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        self._pressured_changelogs.discard(tp)
        self._buffer_drained.set()

    def _changelog_topics(self) -> set[str]:
        return set(self.app.tables.changelog_topics)

    async def _wait_for_changelog_room(self, tp: TP) -> None:
        """Hold a changelog record back until the changelog queue drained below its low mark (max 1 s).

        Recovery's `_slurp_changelogs` takes one event per loop turn; once the changelog queue is full, every
        record handed to the conductor waits for exactly one `get` (a put task and a `wait_first`, five tasks,
        per record). Waiting here once, for the queue's own pressure-drop signal, lets it drain by half and
        the next records go in without waiting. Only a delay before the callback: the record is then
        delivered exactly as before (same order, same `suspend_flow`/stop handling). Changelog queues only:
        their reader never waits for other partitions, so holding the drain loop back cannot deadlock it.
        """
        deadline = time.monotonic() + 1.0
        while tp in self._pressured_changelogs and not self.should_stop and not self.suspend_flow.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._buffer_drained.clear()
            await self.wait_first(self._buffer_drained.wait(), self.suspend_flow.wait(), timeout=remaining)

    async def _wait_next_records(self, timeout: float) -> tuple[Mapping[TP, list[Any]] | None, set[TP] | None]:  # noqa: ASYNC109
        """Faust's `Consumer._wait_next_records`, except for the wait when every partition is paused.

        Upstream sleeps a full second when no partition is active, i.e. when every stream buffer went over
        its high-pressure mark (`on_buffer_full`): the agents drain their queue in far less, and the
        fetcher then sits idle. Here that wait ends as soon as a buffer drops below its low mark
        (`on_buffer_drop` re-activates its partition), still after at most one second, or at stop.
        """
        if not self.flow_active:
            await self.wait(self.can_resume_flow)  # type: ignore[arg-type]
        try:
            self.not_waiting_next_records.set()
            active_partitions: set[TP] | None
            active_partitions = None if self.app.client_only else self._get_active_partitions()
            records: Mapping[TP, list[Any]] = {}
            if active_partitions is None or active_partitions:
                records = await self._getmany(active_partitions=active_partitions, timeout=timeout)
            else:
                self._buffer_drained.clear()
                await self.wait_first(self._buffer_drained.wait(), timeout=1.0)
            return records, active_partitions
        finally:
            self.not_waiting_next_records.set()

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Faust's `Consumer._drain_messages` (faust-streaming 0.15.3), with the callback started eagerly.

        Upstream awaits `self.wait_first(callback(message), self.suspend_flow.wait())` for every message:
        four new tasks (callback, suspend_flow, stopped, crashed) per record. Here the callback's first
        step runs inline (`start_eagerly`); only if it suspends (flow control, producer buffer full, a
        full stream queue) is the rest made a task and awaited with the very same `wait_first`, so a
        rebalance (`suspend_flow`), a stop or a crash still cancels a waiting callback. Upstream's
        tasks also always run the callback's first step, even when `suspend_flow` is already set, so
        starting it inline changes no outcome. Everything else is upstream's loop unchanged: the stop
        checks, the `FETCHING` diag flag, a `sleep(0)` per getmany and per 100 messages, messages below
        `_read_offset` dropped, gaps recorded with `_add_gap` for topics with acks, a commit once
        `_n_acked >= commit_every`, `_read_offset` set after the callback, and the same handling of
        `consumer_stopped_errors`, cancellation and errors. One addition: a record of a changelog partition
        whose queue is over its high-pressure mark first waits (at most 1 s) for the queue's drop signal,
        see `_wait_for_changelog_room`.
        """
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = cast(Any, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspend_flow_wait = self.suspend_flow.wait
        wait_first = self.wait_first
        pressured = self._pressured_changelogs
        deliver = self.lean_delivery
        sleep = asyncio.sleep
        yield_every = 100
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(base.CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if pressured and tp in pressured:
                                await self._wait_for_changelog_room(tp)
                            if deliver is None or not deliver(tp, message):
                                waiting = start_eagerly(callback(message))
                                if waiting is not None:
                                    await wait_first(waiting, suspend_flow_wait())
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                    unset_flag(base.CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(base.CONSUMER_FETCHING)

    def _to_message(self, tp: TP, record: Any) -> ConsumerMessage:
        """`_read` already built the message: stamp the generation, as upstream does when it builds it here."""
        message = cast(ConsumerMessage, record)
        message.generation_id = self.app.consumer_generation_id
        return message

    # --- commits -------------------------------------------------------------------------------------------

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        if self.app.client_only:
            return False
        try:
            return await self.coordinator.commit(offsets)
        except CONNECTION_ERRORS as exc:
            log.warning("commit failed, Redis unreachable (%r); the records will be processed again", exc)
            return False

    def verify_event_path(self, now: float, tp: TP) -> None:
        return None

    def verify_recovery_event_path(self, now: float, tp: TP) -> None:
        return None

    async def _with_retry(self, action: Any, what: str) -> Any:
        delay = 0.1
        while True:
            try:
                return await action()
            except CONNECTION_ERRORS as exc:
                if self.should_stop:
                    raise
                log.warning("%s failed, Redis unreachable (%r); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


def _message(tp: TP, entry_id: bytes, fields: list[bytes], generation: int) -> ConsumerMessage:
    """A stream entry (`ts`, `k`, `v`, `h` as the produce script writes them; `k`/`v` absent = None) as a message."""
    timestamp = 0
    key = value = None
    headers: list[tuple[str, bytes]] = []
    pairs = iter(fields)
    for name, raw in zip(pairs, pairs, strict=True):
        if name == b"v":
            value = raw
        elif name == b"k":
            key = raw
        elif name == b"ts":
            timestamp = int(raw)
        elif name == b"h":
            headers = decode_headers(raw)
    return ConsumerMessage(
        tp.topic,
        tp.partition,
        int(entry_id.partition(b"-")[0]),
        timestamp / 1000.0,
        0,
        headers,
        key,
        value,
        None,
        len(key) if key is not None else 0,
        len(value) if value is not None else 0,
        tp,
        generation_id=generation,
    )


__all__ = ["Consumer", "ConsumerT", "parse_tp_field"]
