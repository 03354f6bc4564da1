"""Lean table recovery: changelog batches applied to their table as they arrive, not one event per loop turn.

Upstream, every changelog record read during recovery becomes a message, goes through the Conductor onto
the tables' changelog queue, and `Recovery._slurp_changelogs` takes it off again with one
`asyncio.wait_for(queue.get())` (a task) per record before buffering it for `apply_changelog_batch`.
Here the consumer hands a whole fetched batch of a changelog partition that Recovery tracks straight to
`apply_batch`, which does what `_slurp_changelogs` does for each event of it, in bulk and in order:

- records at or below the offset Recovery has already seen for the partition are skipped;
- each record is decoded with the changelog channel's schema (as the Conductor would), a record that fails
  to decode is logged and skipped (upstream: the error is thrown into the queue and the slurp loop logs it).
  With Faust's stock schema and event classes the schema's own calls are made directly, and a decoded key
  or value of an immutable builtin type is reused for the same raw bytes (changelogs repeat keys and small
  values; Faust's serializer layers cost far more than the JSON itself);
- anything Recovery still buffers for the table is applied first, then the batch, with
  `table.apply_changelog_batch` (the store's own bulk path), and the user's `on_changelog_event` hook is
  awaited per event when a table has one;
- the partition's seen offset becomes the batch's last offset, and recovery ends (`signal_recovery_end`)
  or standbys become ready exactly when the slurp loop would have decided so.

A partition is only handled here when the table's changelog channel is the only subscriber of its topic
partition, so the records never reach the changelog queue at all: both paths never mix for a partition.
Opt out with `?lean_recovery=false` in the broker URL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any

import faust
from faust.serializers import Registry, codecs
from faust.serializers.schemas import Schema
from faust.topics import Topic
from faust.types import TP, ConsumerMessage, Message
from faust.utils.tracing import finish_span

if TYPE_CHECKING:
    from .consumer import Consumer

log = logging.getLogger(__name__)

#: Decoded key/value types that are safe to share between events (immutable, compared by value).
_SHAREABLE = frozenset({str, bytes, int, float, bool, type(None)})
_CACHE_LIMIT = 100_000
_MISSING = object()


class _Decoder:
    """`Schema.compile`'s decode for one changelog channel, with a cache of immutable decoded keys and values."""

    def __init__(self, app: Any, schema: Any, *, cache: bool = True) -> None:
        self.app = app
        self.schema = schema
        self.cache = cache
        self.loads_key = app.serializers.loads_key
        self.loads_value = app.serializers.loads_value
        self.keys: dict[bytes, Any] = {}
        self.values: dict[bytes, Any] = {}
        registry = app.serializers
        # bytes through the "raw" codec into a bytes field come back as they are: skip the layers then
        self.raw_keys = _passes_bytes(registry, schema.key_type, schema.key_serializer or registry.key_serializer)
        self.raw_values = _passes_bytes(registry, schema.value_type, schema.value_serializer
                                        or registry.value_serializer)

    def __call__(self, message: Message, event_type: Any) -> Any:
        schema = self.schema
        raw_key, raw_value = message.key, message.value
        if self.raw_keys and self.raw_values and type(raw_key) is bytes and type(raw_value) is bytes:
            return event_type(self.app, raw_key, raw_value, message.headers, message)
        key = self.keys.get(raw_key, _MISSING) if raw_key is not None else _MISSING
        if key is _MISSING:
            key = self.loads_key(schema.key_type, raw_key, serializer=schema.key_serializer)
            if self.cache and raw_key is not None and type(key) in _SHAREABLE:
                _remember(self.keys, raw_key, key)
        if raw_value is None and schema.allow_empty:
            return event_type(self.app, key, None, message.headers, message)
        value = self.values.get(raw_value, _MISSING) if raw_value is not None else _MISSING
        if value is _MISSING:
            value = self.loads_value(schema.value_type, raw_value, serializer=schema.value_serializer)
            if self.cache and raw_value is not None and type(value) in _SHAREABLE:
                _remember(self.values, raw_value, value)
        return event_type(self.app, key, value, message.headers, message)


def _passes_bytes(registry: Any, typ: Any, serializer: Any) -> bool:
    """Faust's stock serializer registry decodes bytes for a `bytes` field with the stock "raw" codec: the
    decoded value is the very bytes object given (`want_bytes` twice)."""
    if typ is not bytes or serializer != "raw" or type(registry) is not Registry:
        return False
    codec = codecs.get_codec("raw")
    return type(codec) is codecs.raw and codec.nodes == (codec,)


def _remember(cache: dict[bytes, Any], raw: bytes, decoded: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[raw] = decoded


def _stock_decode(app: Any, channel: Any) -> bool:
    """The channel decodes exactly as `Schema.compile` + `App.create_event` do (nothing overridden)."""
    schema = getattr(channel, "schema", None)
    return (type(app).create_event is faust.App.create_event
            and type(channel)._compile_decode is Topic._compile_decode
            and isinstance(schema, Schema)
            and type(schema).loads_key is Schema.loads_key and type(schema).loads_value is Schema.loads_value
            and type(schema).compile is Schema.compile)


class LeanRecovery:
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.app = consumer.app
        self.records_applied = 0
        self._decoders: dict[int, tuple[Any, _Decoder | None]] = {}

    def _decoder(self, channel: Any) -> _Decoder | None:
        known = self._decoders.get(id(channel))
        if known is None or known[0] is not channel:
            decoder = _Decoder(self.app, channel.schema) if _stock_decode(self.app, channel) else None
            known = self._decoders[id(channel)] = (channel, decoder)
        return known[1]

    def target(self, tp: TP) -> Any | None:
        """The changelog channel to decode `tp`'s records with, if this path may take them now."""
        app: Any = self.app
        tables = app.tables
        recovery = tables.recovery
        if tp not in recovery.active_tps and tp not in recovery.standby_tps:
            return None
        if tp not in recovery.tp_to_table or app.in_transaction or not app.flow_control.is_active():
            return None
        channels = app.topics._tp_index.get(tp)
        if not channels or len(channels) != 1:
            return None
        (channel,) = channels
        if channel.queue is not tables.changelog_queue:
            return None
        return channel

    async def apply_batch(self, tp: TP, channel: Any, records: Sequence[ConsumerMessage]) -> None:
        app: Any = self.app
        recovery = app.tables.recovery
        table = recovery.tp_to_table[tp]
        if tp in recovery.active_tps:
            offsets = recovery.active_offsets
            recovery._active_events_received_at[tp] = monotonic()
        else:
            offsets = recovery.standby_offsets
            recovery._standby_events_received_at[tp] = monotonic()
        seen = offsets.get(tp)
        decode = channel.decode
        fast = self._decoder(channel)
        event_type = app.conf.Event
        to_message = self.consumer._to_message
        events: list[Any] = []
        last = None
        for record in records:
            if seen is not None and record.offset <= seen:
                continue
            message = to_message(tp, record)
            try:
                events.append(fast(message, event_type) if fast is not None else await decode(message, propagate=True))
            except Exception as exc:  # as upstream: logged, skipped, the offset not advanced by it
                log.warning("Error in recovery %r", exc)
                continue
            last = record.offset
        if last is None:
            self._after_batch(recovery)
            return
        pending = recovery.buffers.get(table)
        if pending:
            table.apply_changelog_batch(pending)
            pending.clear()
        table.apply_changelog_batch(events)
        if table._on_changelog_event:
            for event in events:
                await table.on_changelog_event(event)
        offsets[tp] = last
        self.consumer._read_offset[tp] = last
        self.records_applied += len(events)
        self._after_batch(recovery)

    def _after_batch(self, recovery: Any) -> None:
        """The end of each iteration of `Recovery._slurp_changelogs`."""
        if recovery.in_recovery and not recovery.need_recovery():
            recovery.flush_buffers()
            recovery._set_recovery_ended()
            if recovery._actives_span is not None:
                recovery._actives_span.set_tag("Actives-Ready", True)
            recovery.signal_recovery_end.set()
        tables = recovery.tables
        standby_ready = recovery._standbys_span is None and tables.standbys_ready
        if not standby_ready and not recovery.standby_remaining_total():
            if recovery._standbys_span:
                finish_span(recovery._standbys_span)
                recovery._standbys_span = None
            tables.on_standbys_ready()
