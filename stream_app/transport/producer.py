"""Producer: per-partition ordered, batched and pipelined sends with dense offsets.

One sender task drains the send queue in arrival order and writes each batch as one pipeline holding one
`produce` script call per partition, so order per partition holds across batches and retries.
`flush()` is a barrier: it waits for the last record queued before the call, not for an empty queue.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import orjson
from faust.exceptions import ProducerSendError
from faust.topics import Topic
from faust.transport import producer as base
from faust.types import TP, FutureMessage, HeadersArg, RecordMetadata
from mode import Seconds, Service
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import scripts
from .partitioner import partition_for_key

if TYPE_CHECKING:
    from .transport import Transport

log = logging.getLogger(__name__)

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

FLAG_KEY, FLAG_VALUE, FLAG_HEADERS = 1, 2, 4
KEY_PARTITIONS_KEPT = 100_000  # keys whose partition is remembered, per partition count


def encode_headers(headers: HeadersArg | None) -> bytes | None:
    """Headers as JSON pairs; byte values survive through latin-1, which maps bytes 1:1 to code points."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs = [[str(k), v.decode("latin-1") if isinstance(v, bytes | bytearray) else str(v)] for k, v in items]
    return orjson.dumps(pairs)


def decode_headers(raw: bytes | None) -> list[tuple[str, bytes]]:
    if not raw:
        return []
    return [(k, v.encode("latin-1")) for k, v in orjson.loads(raw)]


class Outgoing:
    """One record waiting in the send queue."""

    __slots__ = ("fence", "fields", "future", "timestamp", "tp")

    def __init__(self, tp: TP, fields: list[Any], timestamp: float, fence: str, future: asyncio.Future) -> None:
        self.tp = tp
        self.fields = fields
        self.timestamp = timestamp
        self.fence = fence
        self.future = future


def group_runs(batch: list[Outgoing]) -> list[tuple[TP, str, list[Outgoing]]]:
    """Split a batch into (partition, fence) runs, keeping each partition's order."""
    per_tp: dict[TP, list[tuple[str, list[Outgoing]]]] = {}
    for item in batch:
        runs = per_tp.setdefault(item.tp, [])
        if runs and runs[-1][0] == item.fence:
            runs[-1][1].append(item)
        else:
            runs.append((item.fence, [item]))
    return [(tp, fence, items) for tp, runs in per_tp.items() for fence, items in runs]


class _Buffer(base.ProducerBuffer):
    """Faust's `ProducerBuffer`, also counting the record its task is publishing (taken off the queue)."""

    in_flight = 0

    @property
    def size(self) -> int:
        # upstream reads `app.conf.producer_threaded` first (a settings lookup per consumed record, through the
        # Conductor's `wait_until_ebb`); the transport refuses a threaded producer at start
        return len(self.pending._queue)  # type: ignore[attr-defined]

    async def _send_pending(self, fut: FutureMessage) -> None:
        self.in_flight += 1
        try:
            await super()._send_pending(fut)
        finally:
            self.in_flight -= 1


_TOPIC_PUBLISH = Topic.publish_message


def _size(payload: bytes | None) -> int:
    return len(payload) if isinstance(payload, bytes) else 0


class Producer(base.Producer):
    transport: Transport

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        super().__init__(transport, loop=loop, **kwargs)
        buffer = _Buffer(loop=self.loop, beacon=self.beacon)  # upstream's, with the in-flight count
        buffer.app = self.app
        self.buffer = buffer
        self._queue: deque[Outgoing] = deque()
        self._queued = asyncio.Event()
        self._last: asyncio.Future | None = None
        self._flush_waiters = 0
        self._round_robin: dict[str, itertools.count] = {}
        self._key_partitions: dict[int, dict[bytes, int]] = {}  # partition count -> key -> partition
        self.retries = 0

    # --- sending ---------------------------------------------------------------------------------------

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: HeadersArg | None,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        if partition is None:
            partition = self._partition_now(topic, key)
            if partition is None:
                partitions = await self.transport.registry.partitions(self.transport.client, topic)
                partition = self._partition_of(topic, key, partitions)
        return self._enqueue(topic, key, value, partition, timestamp, headers)

    def _partition_now(self, topic: str, key: bytes | None) -> int | None:
        """The partition for a record without a partition, if the topic's partition count is known here."""
        partitions = self.transport.registry.cached_partitions(topic)
        return None if partitions is None else self._partition_of(topic, key, partitions)

    def _partition_of(self, topic: str, key: bytes | None, partitions: int) -> int:
        if key is None:
            counter = self._round_robin.setdefault(topic, itertools.count())
            return next(counter) % partitions
        # The same keys come back every run (a score per vote account): murmur2 in Python is ~4 us a key.
        if type(key) is not bytes:
            return partition_for_key(key, partitions)
        known = self._key_partitions.get(partitions)
        if known is None:
            known = self._key_partitions[partitions] = {}
        partition = known.get(key)
        if partition is None:
            if len(known) >= KEY_PARTITIONS_KEPT:
                known.clear()
            partition = known[key] = partition_for_key(key, partitions)
        return partition

    def _enqueue(self, topic: str, key: bytes | None, value: bytes | None, partition: int,
                 timestamp: float | None, headers: HeadersArg | None) -> asyncio.Future:
        ts = timestamp if timestamp else time.time()
        header_blob = encode_headers(headers)
        flags = (FLAG_KEY if key is not None else 0) | (FLAG_VALUE if value is not None else 0)
        if header_blob is not None:
            flags |= FLAG_HEADERS
        fields = [int(ts * 1000), flags, key if key is not None else b"", value if value is not None else b"",
                  header_blob or b""]
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append(Outgoing(TP(topic, partition), fields, ts, self.transport.fence_for(topic), future))
        self._last = future
        self._queued.set()
        return future

    def send_soon(self, fut: FutureMessage) -> None:
        """Queue a table's changelog write (or any `Topic.send_soon`) for sending, without Faust's buffer hop.

        Upstream puts the record in `ProducerBuffer`, whose task takes it off again and awaits
        `Topic.publish_message(fut, wait=False)`: an asyncio queue hand-over, a coroutine and a debug log
        per record. When nothing can suspend, here the same steps run inline in the caller, in the order
        `publish_message` takes them (send-initiated sensor, `send`, `_on_published` as done callback), so
        the record is in our send queue when `send_soon` returns. Otherwise (the producer not running, a
        partition that needs a registry round trip, a `Topic` subclass with its own `publish_message`, an
        open transaction, or records still in the buffer, which must stay ahead) it goes through the buffer
        as upstream.
        """
        message = fut.message
        channel: Any = message.channel
        buffer: Any = self.buffer  # our _Buffer (the stub of ProducerBuffer lacks `pending`)
        if (buffer.pending._queue or buffer.in_flight or not self._started.is_set() or self._stopped.is_set()
                or type(channel).publish_message is not _TOPIC_PUBLISH or self.app.in_transaction):
            self.buffer.put(fut)
            return
        topic = channel._topic_name_or_default(channel)
        key = cast(bytes | None, message.key)
        value = cast(bytes | None, message.value)
        partition = message.partition
        if partition is None:
            partition = self._partition_now(topic, key)
            if partition is None:
                self.buffer.put(fut)
                return
        state = self.app.sensors.on_send_initiated(
            self, topic, message=message, keysize=_size(key), valsize=_size(value))
        future = self._enqueue(topic, key, value, partition, message.timestamp, message.headers)
        future.add_done_callback(partial(channel._on_published, message=fut, state=state, producer=self))

    def send_now(self, topic: str, key: bytes | None, value: bytes | None, partition: int) -> asyncio.Future | None:
        """Queue a record on a known partition at once, if nothing queued earlier can still be behind it (the
        checks of `send_soon`'s fast path); None means: send it the ordinary way. For the agent's table
        writes, which skip Faust's FutureMessage machinery (see stream_app/state_table.py)."""
        buffer: Any = self.buffer
        if (buffer.pending._queue or buffer.in_flight or not self._started.is_set() or self._stopped.is_set()
                or self.app.in_transaction):
            return None
        return self._enqueue(topic, key, value, partition, None, None)

    async def send_and_wait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: HeadersArg | None,
        *,
        transactional_id: str | None = None,
    ) -> RecordMetadata:
        future = await self.send(topic, key, value, partition, timestamp, headers)
        return await future

    async def flush(self) -> None:
        """Barrier: wait until every record queued before this call was written (or failed).

        That includes the records waiting in Faust's `ProducerBuffer` (table changelog writes): upstream's
        `buffer.flush()` waits until that buffer is *empty*, which while agents keep updating tables is a
        moving target (a commit measured at ~4 s with a table update per record). Only the records queued
        before this call matter to the caller (`Consumer.commit` computed its offsets before flushing), so
        we wait for the buffer's tail record as of now, then for our own last record. Raises RuntimeError,
        as upstream, if the buffer service is not running while records wait in it.
        """
        last = self._last
        await self._flush_buffer()
        if last is not None and not last.done():
            self._flush_waiters += 1  # a barrier is waiting: the sender stops lingering
            try:
                await asyncio.wait([last])
            finally:
                self._flush_waiters -= 1

    async def _flush_buffer(self) -> None:
        buffer: Any = self.buffer  # faust's ProducerBuffer (its type stub lacks `pending`)
        pending: deque[Any] = buffer.pending._queue  # the asyncio.Queue's deque, oldest first
        if not pending:
            return
        tail = pending[-1]  # a FutureMessage: resolved once written (or failed)
        self._flush_waiters += 1
        try:
            while not tail.done():
                if buffer.state != "running":
                    raise RuntimeError("Cannot flush: Producer not Running")  # as upstream's flush
                # Upstream gives up after 0.1 s without a record handed over (so a slow buffer lets a commit
                # run ahead of its changelog writes); we keep waiting while the buffer service runs.
                await asyncio.wait([tail], timeout=0.5)
        finally:
            self._flush_waiters -= 1

    @Service.task
    async def _sender(self) -> None:
        batch_size = self.transport.options.batch_size
        linger = self.transport.options.linger_ms / 1000.0
        queue = self._queue
        while True:
            if not queue:
                self._queued.clear()
                await self._queued.wait()
            if linger and len(queue) < batch_size and not self._flush_waiters:
                # Also after a write, not only after an idle queue: with a table update per event the records
                # trickle in while a pipeline is in flight, and sending those few at once meant ~3 records
                # per round trip (each a socket write and a Redis wake-up).
                await asyncio.sleep(linger)
            batch = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
            await self._write(batch)

    async def _write(self, batch: list[Outgoing]) -> None:
        """Write a batch, retrying the unwritten runs in order on connection errors."""
        runs = group_runs(batch)
        delay = 0.05
        while runs:
            try:
                runs = await self._write_once(runs)
            except CONNECTION_ERRORS as exc:
                # The pipeline may have been applied before the connection broke: a retry can duplicate
                # records (at-least-once) but never reorders them, since every run is retried in order.
                self.retries += 1
                log.warning("Redis unreachable while producing %d runs (%r); retrying in %.2fs", len(runs), exc,
                            delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _write_once(self, runs: list[tuple[TP, str, list[Outgoing]]]) -> list[tuple[TP, str, list[Outgoing]]]:
        transport = self.transport
        keys = transport.keys
        state_key = transport.group_keys.state
        packed = b"".join([
            pack_produce([keys.stream(tp.topic, tp.partition), keys.counter(tp.topic, tp.partition), state_key],
                         self._maxlen(tp.topic), fence, items)
            for tp, fence, items in runs])
        results = await _send_pipelined(transport.client, packed, len(runs))
        unwritten: list[tuple[TP, str, list[Outgoing]]] = []
        for run, result in zip(runs, results, strict=True):
            tp, fence, items = run
            if isinstance(result, NoScriptError):
                unwritten.append(run)
            elif isinstance(result, Exception):
                _fail(items, ProducerSendError(f"Redis rejected records for {tp}: {result}"))
                log.error("Redis rejected %d records for %s: %r", len(items), tp, result)
            elif int(result[0]) != 1:
                current = result[1].decode() if isinstance(result[1], bytes) else result[1]
                _fail(items, ProducerSendError(
                    f"write to {tp} fenced: generation {fence} is stale (group is at {current})"))
                log.warning("Fenced %d changelog records for %s: generation %s is stale (now %s)", len(items), tp,
                            fence, current)
            else:
                offset = int(result[1])
                for item in items:
                    if not item.future.done():
                        item.future.set_result(
                            RecordMetadata(tp.topic, tp.partition, tp, offset, item.timestamp, 0))
                    offset += 1
        if unwritten:
            await scripts.load_all(transport.client)
        return unwritten

    def _maxlen(self, topic: str) -> int:
        config = self.transport.registry.cached_config(topic)
        if config is not None and config.compacting:
            return 0
        return self.transport.options.maxlen

    async def on_stop(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), timeout=10.0)
        except (TimeoutError, RuntimeError) as exc:
            log.error("producer stopped with unsent records: %r", exc)
        pending = list(self._queue)
        self._queue.clear()
        _fail([p for p in pending], ProducerSendError("producer stopped before the record was sent"))
        await super().on_stop()

    # --- topics and partitioning -----------------------------------------------------------------------

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
        retention_ms = int(float(cast(float, retention)) * 1000) if retention else None
        await self.transport.registry.declare(
            self.transport.client, topic, partitions, compacting=compacting, retention_ms=retention_ms)

    def key_partition(self, topic: str, key: bytes) -> TP:
        partitions = self.transport.registry.cached_partitions(topic) or self.transport.local_partitions(topic)
        return TP(topic, partition_for_key(key, partitions))

    def supports_headers(self) -> bool:
        return True


def _arg(value: Any) -> bytes:
    """One argument as redis-py's encoder writes it (bytes as they are, str as UTF-8, numbers as repr)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value).encode()
    raise TypeError(f"cannot send {type(value).__name__} to Redis")


def _bulk(value: Any) -> bytes:
    data = _arg(value)
    return b"$%d\r\n%b\r\n" % (len(data), data)


_FIELD = b"$%d\r\n%b\r\n" * 5  # an Outgoing's five fields: timestamp, flags, key, value, headers


def pack_produce(keys: list[Any], maxlen: int, fence: str, items: list[Outgoing]) -> bytes:
    """The RESP bytes of one `produce` EVALSHA for a run of records, the same bytes redis-py's pipeline
    packs (a property test pins them), without its per-argument encoder calls: ~5 per record."""
    head = scripts.evalsha_args("produce", keys, [maxlen, fence])
    parts = [b"*%d\r\n" % (len(head) + 5 * len(items)), *map(_bulk, head)]
    for item in items:
        ts, flags, key, value, headers = item.fields
        if type(key) is not bytes or type(value) is not bytes or type(headers) is not bytes:
            parts.extend(map(_bulk, item.fields))
            continue
        t, f = b"%d" % ts, b"%d" % flags
        parts.append(_FIELD % (len(t), t, len(f), f, len(key), key, len(value), value, len(headers), headers))
    return b"".join(parts)


async def _send_pipelined(client: Any, packed: bytes, replies: int) -> list[Any]:
    """Write packed commands on one pooled connection and read their replies; a reply that is an error
    (NOSCRIPT, a script error) comes back as its exception. On anything else the connection is dropped
    (its replies would be out of step) and the error raised: the caller retries the runs in order."""
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(packed)
        results: list[Any] = []
        for _ in range(replies):
            try:
                results.append(await conn.read_response())
            except ResponseError as exc:
                results.append(exc)
        return results
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)


def _fail(items: list[Outgoing], exc: BaseException) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(exc)
            item.future.exception()  # mark retrieved: a fenced write is logged once, not per record
