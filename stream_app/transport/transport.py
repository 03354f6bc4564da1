"""The `redis://` Faust transport: one Redis client, the key layout and the topic registry per app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, ClassVar

import redis.asyncio as aioredis
from faust.exceptions import ImproperlyConfigured
from faust.transport import base
from faust.types import AppT
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from yarl import URL

from .consumer import Consumer
from .keys import KeySpace
from .producer import Producer
from .registry import TopicRegistry
from .url import TransportOptions, TransportURLError, parse_broker_url

log = logging.getLogger(__name__)

DRIVER_VERSION = "sol-stake-redis-streams/1"


def check_supported(app: AppT) -> None:
    """Refuse the settings this driver cannot honour, at start and with a clear message."""
    conf = app.conf
    guarantee = str(getattr(conf.processing_guarantee, "value", conf.processing_guarantee))
    if guarantee == "exactly_once":
        raise ImproperlyConfigured(
            "The redis:// transport supports processing_guarantee='at_least_once' only; "
            "exactly_once needs Kafka transactions"
        )
    if conf.producer_threaded:
        raise ImproperlyConfigured("The redis:// transport does not support producer_threaded=True")


class Transport(base.Transport):
    Consumer: ClassVar[type[Consumer]] = Consumer
    Producer: ClassVar[type[Producer]] = Producer
    driver_version = DRIVER_VERSION
    default_port = 6379

    def __init__(self, url: list[URL], app: AppT, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(url, app, loop=loop)
        check_supported(app)
        if len(url) != 1:
            raise ImproperlyConfigured(f"The redis:// transport takes exactly one broker URL, got {len(url)}")
        try:
            self.redis_url, self.options = parse_broker_url(str(url[0]))
        except TransportURLError as exc:
            raise ImproperlyConfigured(str(exc)) from exc
        self.keys = KeySpace(self.options.prefix)
        self.group_keys = self.keys.group(app.conf.id)
        self.registry = TopicRegistry(self.keys, self.local_partitions)
        self._clients: dict[int, aioredis.Redis] = {}
        self.active_consumer: Consumer | None = None

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client of the running event loop (created lazily: __init__ runs at import time)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None:
            client = self._new_client(self.options)
            self._clients[id(loop)] = client
        return client

    def _new_client(self, options: TransportOptions) -> aioredis.Redis:
        client = aioredis.from_url(
            self.redis_url,
            socket_timeout=options.socket_timeout,
            socket_connect_timeout=5.0,
            socket_keepalive=True,
            health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=2),
            decode_responses=False,
        )
        # XREAD replies stay raw: the consumer turns entries into messages itself (redis-py would first build a
        # dict per entry and convert RESP3's map to the RESP2 layout)
        client.set_response_callback("XREAD", _raw_reply)
        return client

    async def close_clients(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                await client.aclose()
            except Exception as exc:  # closing a dead connection must not fail a shutdown
                log.debug("closing Redis client failed: %r", exc)

    def local_partitions(self, topic: str) -> int:
        """Partition count this process's code declares for `topic` (default: `topic_partitions`)."""
        for channel in _channels(self.app):
            names = getattr(channel, "topics", ()) or ()
            if topic in names and getattr(channel, "partitions", None):
                return int(channel.partitions)
        return int(self.app.conf.topic_partitions)

    def changelog_topics(self) -> set[str]:
        return set(self.app.tables.changelog_topics)

    def fence_for(self, topic: str) -> str:
        """Generation that must still be current for a write to `topic` ('' = unfenced)."""
        consumer = self.active_consumer
        if consumer is None or not self.options.fence_changelogs:
            return ""
        generation = consumer.coordinator.generation
        tables: Any = self.app.tables
        if generation < 0 or topic not in tables._changelogs:  # `changelog_topics` copies a set per call
            return ""
        return str(generation)


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


def _channels(app: AppT) -> Iterable[Any]:
    try:
        return list(app.topics)
    except Exception:  # the conductor may not exist yet in a producer-only process
        return []
