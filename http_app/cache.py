"""Response cache for GraphQL queries: a process-local tier in front of Redis, both gzip-ready.

Key: `<prefix>:gql:v<schema>:<data version>:<caller scope>:<sha256(operation | normalized query | vars)>`,
so a viewer never receives an admin's answer and a schema change never serves old shapes. The data
version is the id of the last live event that changed data: every web process sees the same stream,
so they agree on it without deleting keys (old versions simply expire). Only successful queries are
stored (never mutations, subscriptions or errors), for `Settings.cache_ttl`. A data change drops the
local tier and re-renders the hot public queries once (warming, one process per query thanks to a
Redis claim), so readers do not pay the cold engine cost after a run. Hit/miss counters live in Redis
(flushed about once a second) so every web process reports the same hit rate. When Redis is down the
cache is bypassed: answers still come from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from http_app.graphql import data
from http_app.graphql.limits import SCHEMA_VERSION
from http_app.keys import CACHE, DB_POOL
from http_app.metrics import CACHE_LOOKUP
from http_app.principal import ADMIN_SYSTEM, ANONYMOUS
from stream_app import live
from stream_app.settings import Settings

log = logging.getLogger("http_app.cache")

LOCAL_MAX_ENTRIES = 256
LOCAL_MAX_BYTES = 128 * 1024 * 1024
GZIP_MIN_BYTES = 1024
WARM_TOP = 8
WARM_DEBOUNCE = 1.0
PEER_WAIT = 15.0
STATS_FLUSH_SECONDS = 1.0
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

LocalKey = tuple[str, str, str | None, bytes]  # scope, query text, operation name, canonical variables


@dataclass(frozen=True)
class Entry:
    body: bytes
    gz: bytes | None  # gzip of body, when worth it
    expires: float  # monotonic deadline of the local copy
    stale: bool = False  # the previous data version, served only while its re-render runs


@dataclass
class WarmSpec:
    """A public query worth re-rendering after a run."""

    query: str
    operation_name: str | None
    variables: dict[str, Any] | None
    normalized: str
    local_key: LocalKey
    hits: int = 0


Renderer = Callable[[WarmSpec], Awaitable[bytes | None]]


def canonical_variables(variables: dict[str, Any] | None) -> bytes:
    if not variables:
        return b"{}"
    return orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)


def compress(body: bytes) -> bytes | None:
    return gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= GZIP_MIN_BYTES else None


class ResponseCache:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.ttl = settings.cache_ttl
        self.production = settings.production  # picks the security headers built into cached answers
        self.prefix = f"{settings.redis_prefix}:gql:"
        self.stats_key = f"{settings.redis_prefix}:gqlstats"
        self.redis_prefix = settings.redis_prefix
        self.generation = 0  # bumped by every invalidation: a render started before it is not stored
        self.data_version = "0-0"  # id of the last data-changing live event (part of every key)
        self.renderer: Renderer | None = None
        self._local: OrderedDict[LocalKey, Entry] = OrderedDict()
        self._stale: dict[LocalKey, Entry] = {}
        self._inflight: dict[LocalKey, asyncio.Future[Entry | None]] = {}
        self._local_bytes = 0
        self._warm: dict[str, WarmSpec] = {}
        self._hits = 0
        self._misses = 0
        self._last_flush = time.monotonic()
        self._flushing: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._redis_down_logged = False

    # ---- keys -----------------------------------------------------------------------------------------
    def redis_key(self, scope: str, operation_name: str | None, normalized: str, variables: bytes) -> str:
        digest = hashlib.sha256(b"|".join([(operation_name or "").encode(), normalized.encode(), variables]))
        return f"{self.prefix}v{SCHEMA_VERSION}:{self.data_version}:{scope}:{digest.hexdigest()}"

    # ---- lookups --------------------------------------------------------------------------------------
    def get_local(self, key: LocalKey) -> Entry | None:
        entry = self._local.get(key)
        if entry is None:
            entry = self._stale.get(key)  # stale-while-revalidate: its fresh render is under way
            if entry is not None:
                self._count(hit=True, tier="stale")
            return entry
        if entry.expires < time.monotonic():
            self._drop_local(key)
            return None
        self._count(hit=True, tier="local")
        spec = self._warm.get(key[1]) if key[0] == "public" else None
        if spec is not None:
            spec.hits += 1
        return entry

    def peek(self, key: LocalKey) -> Entry | None:
        """The fresh local entry, without counting a lookup."""
        return self._local.get(key)

    async def get_shared(self, local_key: LocalKey, redis_key: str) -> Entry | None:
        try:
            stored = await self.redis.get(redis_key)
        except REDIS_ERRORS as exc:
            self._redis_unavailable(exc)
            return None
        if stored is None:
            self._count(hit=False, tier="redis")
            return None
        gz = stored.encode() if isinstance(stored, str) else bytes(stored)
        entry = self._store_local(local_key, gzip.decompress(gz), gz, self.generation)
        self._count(hit=True, tier="redis")
        return entry

    async def put(self, local_key: LocalKey, redis_key: str, body: bytes, generation: int,
                  warm: WarmSpec | None = None) -> Entry | None:
        """Store a fresh answer unless an invalidation happened while it was being rendered."""
        if generation != self.generation:
            return None
        gz = compress(body)
        entry = self._store_local(local_key, body, gz, generation)
        if warm is not None and warm.query not in self._warm:
            self._warm[warm.query] = warm
            if len(self._warm) > 4 * WARM_TOP:  # forget the least used specs
                for query, _ in sorted(self._warm.items(), key=lambda kv: kv[1].hits)[: len(self._warm) // 2]:
                    del self._warm[query]
        try:
            await self.redis.set(redis_key, gz if gz is not None else gzip.compress(body, mtime=0),
                                 px=int(self.ttl * 1000))
        except REDIS_ERRORS as exc:
            self._redis_unavailable(exc)
        return entry

    # ---- invalidation and warming -------------------------------------------------------------------
    def drop_local(self) -> None:
        self.generation += 1
        self._local.clear()
        self._local_bytes = 0

    async def invalidate(self) -> int:
        """Drop every cached answer (this process and Redis). Returns the Redis keys removed."""
        self.drop_local()
        deleted = 0
        try:
            batch: list[bytes] = []
            async for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += await self.redis.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self.redis.unlink(*batch)
            # Tell every web process (this one included) to drop its local tier too.
            await live.announce(self.redis, self.redis_prefix, {"type": "cache", "action": "clear"})
        except REDIS_ERRORS as exc:
            self._redis_unavailable(exc)
        return deleted

    async def clear(self) -> int:
        """`invalidate` plus the hit/miss counters."""
        deleted = await self.invalidate()
        self._hits = self._misses = 0
        try:
            deleted += await self.redis.unlink(self.stats_key)
        except REDIS_ERRORS as exc:
            self._redis_unavailable(exc)
        return deleted

    def on_live_event(self, version: str, event: dict[str, Any]) -> None:
        """Data changed (scores, a finished run, a commission change, an admin clear): move to a new
        data version, drop the local tier and re-render the hot queries (at once when a run finished;
        after a short quiet period while score batches keep arriving)."""
        kind = event.get("type")
        finished_run = kind == "run" and event.get("status") in ("completed", "partial", "failed")
        if kind not in ("scores", "commission", "cache") and not finished_run:
            return
        self.data_version = version
        if kind == "cache":
            self._stale.clear()  # an admin asked for a clean slate: nothing old is served
        else:
            # Until their re-render lands, hot public answers are served from the previous version
            # rather than making readers wait for (or each pay) the cold render.
            for key, entry in self._local.items():
                if key[0] == "public" and key[1] in self._warm:
                    self._stale[key] = Entry(entry.body, entry.gz, entry.expires, stale=True)
        self.drop_local()
        self.schedule_warm(delay=0.0 if finished_run else WARM_DEBOUNCE)

    def schedule_warm(self, delay: float) -> None:
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
        self._warming = asyncio.create_task(self._warm_after(delay), name="cache-warm")

    async def warm_now(self) -> int:
        """Re-render the hottest public queries; returns how many were rendered by this process."""
        if self.renderer is None:
            return 0
        rendered = 0
        generation = self.generation
        for spec in sorted(self._warm.values(), key=lambda s: s.hits, reverse=True)[:WARM_TOP]:
            if generation != self.generation:
                return rendered
            redis_key = self.redis_key("public", spec.operation_name, spec.normalized, spec.local_key[3])
            if not await self._claim(redis_key):
                await self._from_peer(spec.local_key, redis_key, generation)  # another process renders it
                continue
            body = await self.renderer(spec)
            if body is not None:
                await self.put(spec.local_key, redis_key, body, generation)
                rendered += 1
            self._stale.pop(spec.local_key, None)
        return rendered

    async def _from_peer(self, local_key: LocalKey, redis_key: str, generation: int) -> None:
        """Wait (bounded) for the process that claimed this render to store it, then keep a local copy."""
        deadline = time.monotonic() + PEER_WAIT
        while time.monotonic() < deadline and generation == self.generation:
            try:
                stored = await self.redis.get(redis_key)
            except REDIS_ERRORS:
                break
            if stored is not None:
                gz = stored.encode() if isinstance(stored, str) else bytes(stored)
                self._store_local(local_key, gzip.decompress(gz), gz, generation)
                break
            await asyncio.sleep(0.05)
        self._stale.pop(local_key, None)

    # ---- single flight: one render per key at a time, the others wait for it --------------------------
    def join(self, key: LocalKey) -> asyncio.Future[Entry | None] | None:
        """A render of `key` already under way (await it), or None: the caller renders and must `done`."""
        future = self._inflight.get(key)
        if future is not None:
            return future
        self._inflight[key] = asyncio.get_running_loop().create_future()
        return None

    def done(self, key: LocalKey, entry: Entry | None) -> None:
        future = self._inflight.pop(key, None)
        if future is not None and not future.done():
            future.set_result(entry)

    async def settled(self) -> None:
        """Wait for a scheduled warm-up to finish (tests and benchmarks use it; serving never waits)."""
        while self._warming is not None and not self._warming.done():
            try:
                await asyncio.shield(self._warming)
            except asyncio.CancelledError:
                if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise

    async def _warm_after(self, delay: float) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            await self.warm_now()
        except asyncio.CancelledError:
            raise  # superseded by a newer event: its warm-up inherits the stale entries
        except Exception:
            log.exception("cache warming failed")
        self._stale.clear()

    async def _claim(self, redis_key: str) -> bool:
        try:
            claimed = await self.redis.set(f"{redis_key}:warm", b"1", nx=True, ex=30)
        except REDIS_ERRORS:
            return True  # no Redis: render locally
        return bool(claimed)

    # ---- status ---------------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """The seed's cache shape: totalKeys, memoryUsage, hitRate (None until there was a lookup)."""
        await self.flush_stats()
        try:
            total = 0
            async for _key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
                total += 1
            memory = await self.redis.info("memory")
            counters = await self.redis.hgetall(self.stats_key)
        except REDIS_ERRORS as exc:
            self._redis_unavailable(exc)
            return {"totalKeys": len(self._local), "memoryUsage": _human(self._local_bytes), "hitRate": None}
        hits = int(counters.get(b"hits", 0))
        misses = int(counters.get(b"misses", 0))
        return {
            "totalKeys": total,
            "memoryUsage": str(memory.get("used_memory_human", "0B")),
            "hitRate": round(hits / (hits + misses), 4) if hits + misses else None,
        }

    async def flush_stats(self) -> None:
        hits, misses = self._hits, self._misses
        if not hits and not misses:
            return
        self._hits = self._misses = 0
        self._last_flush = time.monotonic()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(self.stats_key, "hits", hits)
                pipe.hincrby(self.stats_key, "misses", misses)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._hits += hits
            self._misses += misses
            self._redis_unavailable(exc)

    def count_miss(self) -> None:
        self._count(hit=False, tier="all")

    # ---- internals ------------------------------------------------------------------------------------
    def _count(self, *, hit: bool, tier: str) -> None:
        if hit:
            self._hits += 1
            CACHE_LOOKUP(tier, "hit")
        elif tier == "all":
            self._misses += 1
            CACHE_LOOKUP(tier, "miss")
        now = time.monotonic()
        if now - self._last_flush > STATS_FLUSH_SECONDS and (self._flushing is None or self._flushing.done()):
            self._last_flush = now
            self._flushing = asyncio.create_task(self.flush_stats())

    def _store_local(self, key: LocalKey, body: bytes, gz: bytes | None, generation: int) -> Entry:
        entry = Entry(body, gz, time.monotonic() + self.ttl)
        if generation == self.generation:
            self._stale.pop(key, None)
            self._drop_local(key)
            self._local[key] = entry
            self._local_bytes += len(body) + len(gz or b"")
            while self._local and (len(self._local) > LOCAL_MAX_ENTRIES or self._local_bytes > LOCAL_MAX_BYTES):
                self._drop_local(next(iter(self._local)))
        return entry

    def _drop_local(self, key: LocalKey) -> None:
        old = self._local.pop(key, None)
        if old is not None:
            self._local_bytes -= len(old.body) + len(old.gz or b"")

    def _redis_unavailable(self, exc: BaseException) -> None:
        if not self._redis_down_logged:
            log.warning("Redis unavailable for the response cache (%s); serving uncached", exc)
            self._redis_down_logged = True


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "K", "M", "G"):
        if value < 1024:
            return f"{value:.2f}{unit}"
        value /= 1024
    return f"{value:.2f}T"


# ---- REST routes: the seed's /cache/status and /cache/clear ---------------------------------------------

async def cache_status(request: web.Request) -> web.Response:
    # Public, as in the seed's curl example: numbers only, never keys or contents.
    return web.json_response({"status": "ok", "cache": await request.app[CACHE].status()})


async def cache_clear(request: web.Request) -> web.Response:
    principal = request.get("principal", ANONYMOUS)
    if not principal.can(ADMIN_SYSTEM):
        status = 401 if principal.anonymous else 403
        return web.json_response(
            {"error": "Unauthorized" if status == 401 else "Forbidden",
             "message": f"{ADMIN_SYSTEM} permission required"},
            status=status,
        )
    deleted = await request.app[CACHE].clear()
    await data.audit(request.app[DB_POOL], "cache.clear", principal.user_id,
                     {"deleted": deleted, "via": "rest", "requestId": request.get("request_id")})
    return web.json_response({"status": "ok", "message": "Cache cleared", "deletedKeys": deleted})


def setup_cache_routes(app: web.Application) -> None:
    app.router.add_get("/cache/status", cache_status)
    app.router.add_post("/cache/clear", cache_clear)


