"""Lean delivery: a consumed record put on its stream's queue without the Conductor's per-record coroutines.

Upstream, every record goes through `Conductor.on_message`: an `asyncio.Lock` around the callback lookup,
then the partition's handler awaits `flow_control.acquire()`, `producer.buffer.wait_until_ebb()` and
`channel.decode()` before `queue.put_nowait_enhanced(...)`. When none of those would wait, `deliver` does
the same steps synchronously for a partition that exactly one channel subscribes to:

- the callback lock is free, flow control is active, the producer buffer is not over its limit, the queue
  is not full (upstream would otherwise wait or take its slow path): else it returns False and the caller
  uses upstream's callback;
- the record is decoded as the channel's compiled `Schema.decode` does (only for Faust's stock
  Topic/Schema/App.create_event; a decode error also falls back, so upstream reports it its own way);
- `message.incref(1)`, then `put_nowait_enhanced` with the same pressure callbacks (sensor + consumer).

Opt out with `?lean_delivery=false` in the broker URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from faust.types import TP, Message

from .recovery import _Decoder, _stock_decode

if TYPE_CHECKING:
    from .consumer import Consumer


class LeanDelivery:
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.app: Any = consumer.app
        self.delivered = 0
        self._decoders: dict[int, tuple[Any, _Decoder | None]] = {}
        self._pressure: dict[TP, tuple[Callable[[], None], Callable[[], None]]] = {}
        self._event_type: Any = None

    def __call__(self, tp: TP, message: Message) -> bool:
        app = self.app
        conductor = app.topics
        if conductor._tp_to_callback_lock.locked() or tp not in conductor._tp_to_callback:
            return False
        channels = conductor._tp_index.get(tp)
        if not channels or len(channels) != 1 or not app.flow_control.is_active():
            return False
        buffer = app.producer.buffer
        if buffer.size > buffer.max_messages:
            return False
        (channel,) = channels
        queue = channel.queue
        if queue.full():
            return False
        decoder = self._decoder(channel)
        if decoder is None:
            return False
        event_type = self._event_type
        if event_type is None:
            event_type = self._event_type = app.conf.Event
        try:
            event = decoder(message, event_type)
        except Exception:  # upstream decodes it again and reports the error to the channel its own way
            return False
        on_high, on_drop = self._pressure_callbacks(tp)
        message.incref(1)
        queue.put_nowait_enhanced(event, on_pressure_high=on_high, on_pressure_drop=on_drop)
        self.delivered += 1
        return True

    def _decoder(self, channel: Any) -> _Decoder | None:
        known = self._decoders.get(id(channel))
        if known is None or known[0] is not channel:
            decoder = _Decoder(self.app, channel.schema, cache=False) if _stock_decode(self.app, channel) else None
            known = self._decoders[id(channel)] = (channel, decoder)
        return known[1]

    def _pressure_callbacks(self, tp: TP) -> tuple[Callable[[], None], Callable[[], None]]:
        """The handler's own `on_pressure_high`/`on_pressure_drop` for `tp` (see `faust.transport.conductor`)."""
        callbacks = self._pressure.get(tp)
        if callbacks is None:
            consumer = self.consumer
            sensor_full = self.app.sensors.on_topic_buffer_full

            def on_pressure_high() -> None:
                sensor_full(tp)
                consumer.on_buffer_full(tp)

            def on_pressure_drop() -> None:
                consumer.on_buffer_drop(tp)

            callbacks = self._pressure[tp] = (on_pressure_high, on_pressure_drop)
        return callbacks
