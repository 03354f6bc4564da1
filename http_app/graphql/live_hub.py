"""One tail of the live stream per web process, fanned out to cache invalidation and subscribers.

Subscribers register a bounded queue; the hub pushes `(version, event)` to every queue. Data that all
subscribers need for one event (e.g. the new scores) is fetched once and shared (`memo`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from http_app.keys import CACHE, REDIS, SETTINGS
from stream_app import live

log = logging.getLogger("http_app.live")

QUEUE_SIZE = 1_000
MEMO_SIZE = 16  # per-event rows (up to every validator): keep only the latest few events
RETRY_SECONDS = 1.0


class Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = False


class LiveHub:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.version = "0-0"  # id of the last event dispatched
        self.connected = asyncio.Event()
        self._subscribers: set[Subscriber] = set()
        self._memo: OrderedDict[Hashable, asyncio.Future[Any]] = OrderedDict()
        self._redis: aioredis.Redis | None = None

    # -- subscribers --
    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def memo(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> Any:
        """Compute once per key for every subscriber (the latest MEMO_SIZE keys are kept)."""
        future = self._memo.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._memo[key] = future
            if len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
            try:
                future.set_result(await compute())
            except Exception as exc:
                self._memo.pop(key, None)
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters get it via await below
                raise
        return await asyncio.shield(future)

    # -- the tail --
    async def run(self) -> None:
        settings = self.app[SETTINGS]
        assert settings.redis_url is not None
        # Its own connection: XREAD BLOCK outlives the short socket timeout of the request-path client.
        self._redis = aioredis.from_url(settings.redis_url, socket_timeout=15.0, socket_connect_timeout=2.0)
        last = "$"
        while True:
            try:
                if last == "$":
                    last = await live.latest_id(self._redis, settings.redis_prefix)
                    self.version = last
                    if CACHE in self.app:
                        self.app[CACHE].data_version = last  # the same version every process starts from
                self.connected.set()
                async for entry_id, event in live.tail(self._redis, settings.redis_prefix, last, block_ms=5_000):
                    last = entry_id
                    await self.dispatch(entry_id, event)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("live stream unavailable (%s); retrying in %.0fs", exc, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:
                log.exception("live hub failed on an event; continuing after it")
                await asyncio.sleep(RETRY_SECONDS)

    async def dispatch(self, entry_id: str, event: dict[str, Any]) -> None:
        self.version = entry_id
        if CACHE in self.app:
            try:
                self.app[CACHE].on_live_event(entry_id, event)
            except Exception:  # the cache must never stop subscriptions
                log.exception("cache invalidation failed for live event %s", entry_id)
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait((entry_id, event))
            except asyncio.QueueFull:
                sub.overflowed = True

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


def hub_redis(app: web.Application) -> aioredis.Redis:
    return app[REDIS]
