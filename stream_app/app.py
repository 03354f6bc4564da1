"""The Faust application: broker, topics and the scoring-state table. No agents here (see agents.py).

Everything is plain bytes on the wire (orjson encoded by us), so a malformed message is caught where we
can say which record it was, and the same app runs unchanged on Kafka (`STREAM_BROKER=kafka://…`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.sensors import Monitor

from stream_app.settings import Settings

APP_ID = "solstake"
RECORDS_TOPIC = "validator-records"
SCORES_TOPIC = "trust-scores"
DEAD_LETTER_TOPIC = "dead-letters"
STATE_TABLE = "validator-state"
CHANGELOG_TOPIC = f"{APP_ID}-{STATE_TABLE}-changelog"


def broker_url(settings: Settings, redis_url: str) -> str:
    """STREAM_BROKER when set, else our Redis transport on REDIS_URL with every key under REDIS_PREFIX.

    Records are trimmed after STREAM_RETENTION: a dev cluster produces ~7 MB of records and scores per run.
    """
    if settings.stream_broker:
        return settings.stream_broker
    separator = "&" if "?" in redis_url else "?"
    retention_ms = int(settings.effective_stream_retention * 1000)
    return f"{redis_url}{separator}prefix={settings.redis_prefix}&retention_ms={retention_ms}"


@dataclass
class StreamApp:
    app: faust.App
    records: Any  # faust TopicT
    scores: Any
    dead_letters: Any
    state: Any  # faust Table: vote pubkey -> orjson(state dict)


class QuietMonitor(Monitor):
    """Faust's `Monitor` without its per-message bookkeeping (counters, timestamps and latency samples for
    every message in, event, table access and send: ~1.5% of the worker's CPU). Nothing reads them here:
    Faust's web views are off and /metrics comes from `metrics.PipelineSensor`. Commits, rebalances and
    send errors are still recorded."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        pass


def create_stream_app(settings: Settings, redis_url: str, **conf: Any) -> StreamApp:
    options: dict[str, Any] = {
        "broker": broker_url(settings, redis_url),
        "store": "memory://",
        "topic_partitions": settings.stream_partitions,
        "topic_replication_factor": 1,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "web_enabled": False,
        "table_standby_replicas": 0,
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_interval": 1.0,
        # A SIGKILLed worker's partitions move to the others after this long (Faust's default is 60 s).
        "broker_session_timeout": 10.0,
        "stream_wait_empty": True,
        "producer_linger": 0.005,
        "worker_redirect_stdouts": False,
        "Monitor": QuietMonitor,
    }
    options.update(conf)
    app = faust.App(APP_ID, **options)
    partitions = settings.stream_partitions
    records = app.topic(RECORDS_TOPIC, partitions=partitions, key_type=bytes, value_type=bytes)
    scores = app.topic(SCORES_TOPIC, partitions=partitions, key_type=bytes, value_type=bytes)
    dead = app.topic(DEAD_LETTER_TOPIC, partitions=1, key_type=bytes, value_type=bytes)
    state = app.Table(STATE_TABLE, default=None, partitions=partitions, key_type=bytes, value_type=bytes)
    return StreamApp(app, records, scores, dead, state)
