"""Sliding-window rate limit on Redis: one Lua script, Redis's clock, exact counting.

Each client (policy, IP + user) has a sorted set of the microsecond timestamps of its admitted requests.
The script drops entries older than the window, admits the request only if fewer than `limit` remain (a
refused request is not recorded, so hammering cannot grow the set), and reports when the oldest entry leaves.

The same round trip can also answer two questions the request needs next, so the hot path costs one
EVALSHA: is this token's `jti` on the logout deny-list, and what is in the response cache under a key.

Requests of one client (same window key and token) that arrive in the same event-loop iteration share one
EVALSHA asking for n slots: the script admits min(n, limit - used) of them, in order, exactly as n
back-to-back calls would (refused ones still unrecorded), so a busy client costs Redis one script run per
loop iteration instead of one per request.

Redis unavailable: ordinary requests are let through without limit (`solstake_ratelimit_unavailable_total`
{outcome="fail_open"} counts them); sign-in requests get 503 (`fail_closed`), since nonces need Redis anyway.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import math
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import istr
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from http_app.access_metrics import RATE_LIMIT_REJECTIONS, RATE_LIMIT_UNAVAILABLE
from http_app.auth import ACCESS_CONTROL, REDIS_UNAVAILABLE, REVOCATION_CHECKED, TokenCheck
from http_app.client_ip import client_ip
from http_app.principal import ANONYMOUS, Principal
from http_app.redis_line import RedisLine, supports
from stream_app.settings import Settings

SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local log = KEYS[1]
redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
local used = redis.call('ZCARD', log)
local wanted = tonumber(ARGV[6] or '1')
local allowed = 0
local reserved = 0
if used < limit then
  allowed = math.min(wanted, limit - used)
  local offset = tonumber(ARGV[8] or '0')
  local reserve = tonumber(ARGV[7] or '0')
  -- a reservation is granted only with plenty of room: never more than 1/ARGV[9] of what is left
  if allowed == wanted and reserve > 0 and (limit - used) >= (wanted + reserve) * tonumber(ARGV[9]) then
    reserved = reserve
  end
  local members = {}
  if allowed > 0 then members = {now, ARGV[3]} end
  for i = 2, allowed do
    members[#members + 1] = now
    members[#members + 1] = ARGV[3] .. '.' .. i
  end
  for i = allowed + 1, allowed + reserved do
    members[#members + 1] = now + offset
    members[#members + 1] = ARGV[3] .. '.' .. i
  end
  -- wanted = 0: a reservation refilled ahead of need, with no request waiting
  if #members > 0 then redis.call('ZADD', log, unpack(members)) end
  redis.call('PEXPIRE', log, math.ceil((window + offset) / 1000))
  used = used + allowed + reserved
end
local reset = window
local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
local k = 2
local revoked = 0
if ARGV[4] == '1' then
  revoked = redis.call('EXISTS', KEYS[k])
  k = k + 1
end
local cached = false
if ARGV[5] == '1' and allowed > 0 and revoked == 0 then cached = redis.call('GET', KEYS[k]) end
return {allowed, used, reset, now, revoked, cached, reserved}
"""

RATE_LIMIT_MESSAGE = "Rate limit exceeded. Please try again later."


@dataclass(frozen=True)
class Policy:
    name: str
    limit: int
    window: float  # seconds
    # Header texts that never change, built once (Verdict.headers runs for every request).
    limit_text: str = field(init=False, repr=False, compare=False)
    policy_text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limit_text", str(self.limit))
        object.__setattr__(self, "policy_text", f'"{self.name}";q={self.limit};w={math.ceil(self.window)}')


@dataclass(frozen=True)
class Policies:
    anonymous: Policy
    authenticated: Policy
    signin: Policy

    @classmethod
    def from_settings(cls, settings: Settings) -> Policies:
        return cls(
            anonymous=Policy("anonymous", settings.rate_limit, settings.rate_window),
            authenticated=Policy("authenticated", settings.rate_limit_authenticated or settings.rate_limit,
                                 settings.rate_window),
            signin=Policy("signin", settings.rate_limit_signin, settings.rate_window_signin),
        )


class Verdict:
    """One request's rate-limit outcome. A plain slotted class, not a frozen dataclass: one is built per
    request, and a frozen dataclass's __init__ (object.__setattr__ per field) measured ~1 us more."""

    __slots__ = ("allowed", "cached", "policy", "redis_now", "reset_seconds", "revoked", "used")

    def __init__(self, policy: Policy, allowed: bool, used: int, reset_seconds: float, redis_now: float,
                 revoked: bool | None, cached: bytes | None) -> None:
        self.policy = policy
        self.allowed = allowed
        self.used = used
        self.reset_seconds = reset_seconds  # until the oldest counted request leaves the window
        self.redis_now = redis_now  # Redis's clock, epoch seconds
        self.revoked = revoked  # None: not asked
        self.cached = cached

    def __repr__(self) -> str:
        return (f"Verdict(policy={self.policy.name!r}, allowed={self.allowed}, used={self.used}, "
                f"reset_seconds={self.reset_seconds}, revoked={self.revoked})")

    @property
    def remaining(self) -> int:
        return max(0, self.policy.limit - self.used)

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_seconds))

    def headers(self) -> dict[str, str]:
        """X-RateLimit-* as in the seed (Reset = epoch milliseconds) and the IETF draft's fields (delta seconds).
        Runs for every admitted request: plain arithmetic, and names as istr (no case folding per insert)."""
        policy = self.policy
        remaining = policy.limit - self.used
        if remaining < 0:
            remaining = 0
        reset = self.reset_seconds
        reset_delta = math.ceil(reset) if reset > 0 else 0
        return {
            _LIMIT: policy.limit_text,
            _REMAINING: str(remaining),
            _RESET: str(int((self.redis_now + reset) * 1000)),
            _POLICY: policy.policy_text,
            _RATELIMIT: f'"{policy.name}";r={remaining};t={reset_delta}',
        }


_LIMIT, _REMAINING, _RESET, _POLICY, _RATELIMIT = (
    istr(name) for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy",
                            "RateLimit"))


@lru_cache(maxsize=65536)
def _window_key(prefix: str, policy: str, client: str) -> str:
    """Hashed, so client addresses are not readable in Redis and every key has the same short length."""
    digest = hashlib.blake2b(client.encode(), digest_size=16).hexdigest()
    return f"{prefix}:rl:{policy}:{digest}"


# Most requests one shared EVALSHA asks slots for (a bound on the script's ZADD arguments).
MAX_BATCH = 512
# Reservations for a busy anonymous client (see SlidingWindowLimiter): how long reserved slots may be used
# (they are recorded this far in the future, so each stays counted at least a full window after its use),
# how many at most, and the share of the client's remaining room they may take (the script enforces it).
RESERVE_SECONDS = 0.25
MAX_RESERVE = 256
RESERVE_SHARE = 16

_Group = tuple[str, str | None, int, float]  # window key, revocation key, limit, window


class _Reservation:
    """Slots a busy client was granted in Redis beyond its waiting requests, handed out locally in order."""

    __slots__ = ("closed", "count", "expires", "first_member", "member", "policy", "redis_now", "refilling",
                 "reset_seconds", "sent_at", "taken", "used_first")

    def __init__(self, batch: _Batch, reply: Any) -> None:
        admitted, used_after, reset_us, now_us = (int(x) for x in reply[:4])
        self.policy = batch.policy
        self.count = int(reply[6])
        self.member = batch.args[5 if batch.args[1] == 1 else 6]  # ARGV[3], after the keys
        self.first_member = admitted + 1
        self.used_first = used_after - self.count + 1
        self.reset_seconds = reset_us / 1_000_000
        self.redis_now = now_us / 1_000_000
        self.sent_at = batch.sent_at
        self.expires = batch.sent_at + RESERVE_SECONDS  # sent before the script ran: errs on the safe side
        self.taken = 0  # handed out so far (the next reservation is sized on it)
        self.closed = False
        self.refilling = False  # the next reservation has been asked for

    def take(self, now: float) -> Verdict | None:
        if self.closed or now >= self.expires or self.taken >= self.count:
            return None
        index = self.taken
        self.taken += 1
        elapsed = now - self.sent_at
        return Verdict(self.policy, True, self.used_first + index, max(0.0, self.reset_seconds - elapsed),
                       self.redis_now + elapsed, None, None)

    def unused_members(self) -> list[str]:
        start = self.first_member + self.taken
        return [f"{self.member}.{i}" for i in range(start, self.first_member + self.count)]


class _Batch:
    """Requests of one client waiting for the same EVALSHA; each waiter has its own future (cancelling one
    request must not cancel the others) and, optionally, the cache key whose GET rides in the same write."""

    __slots__ = ("args", "asks_revocation", "cache_keys", "group", "policy", "sent_at", "waiters")

    def __init__(self, group: _Group, args: list[Any], policy: Policy, asks_revocation: bool) -> None:
        self.group = group
        self.args = args
        self.policy = policy
        self.asks_revocation = asks_revocation
        self.waiters: list[asyncio.Future[Verdict]] = []
        self.cache_keys: list[str | None] = []
        self.sent_at = 0.0  # loop time just before the script was sent

    def settle(self, reply: Any = None, cached: list[Any] | None = None, error: BaseException | None = None) -> None:
        if error is None:
            admitted, used_after, reset_us, now_us, revoked = reply[:5]
            reset_seconds, redis_now = int(reset_us) / 1_000_000, int(now_us) / 1_000_000
            revoked_flag = bool(revoked) if self.asks_revocation else None
            first_used = used_after - reply[6] - admitted + 1  # reply[6]: slots reserved after the waiters'
        for index, waiter in enumerate(self.waiters):
            if waiter.done():
                continue
            if error is not None:
                waiter.set_exception(error)
                continue
            allowed = index < admitted  # the script admitted the first `admitted`, in arrival order
            body = cached[index] if cached is not None and allowed and not revoked else None
            waiter.set_result(Verdict(self.policy, allowed, first_used + index if allowed else used_after,
                                      reset_seconds, redis_now, revoked_flag, body))


class SlidingWindowLimiter:
    """`line` (optional) carries the hot-path round trip; `redis` is the fallback (TLS, Unix sockets)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, line: RedisLine | None = None, *,
                 share: bool = True, reserve: bool = True) -> None:
        """`share`: one EVALSHA per client and loop iteration (else one per request); `reserve`: slots
        reserved for busy anonymous clients. Both only on the line; off only to measure what they save."""
        self._redis = redis
        self._line = line
        self._share = share and line is not None
        self._reserve = reserve
        self._prefix = prefix
        self._script = redis.register_script(SLIDING_WINDOW_LUA)
        # Members must be unique per admitted request; a process tag + counter is cheaper than uuid4.
        self._tag = os.urandom(6).hex()
        self._counter = itertools.count()
        self._open: dict[_Group, _Batch] = {}  # joinable in this loop iteration
        self._reservations: dict[_Group, _Reservation] = {}
        self._next: dict[_Group, _Reservation] = {}  # refilled ahead: handed out once the current one is used up
        self._queued: list[_Batch] = []
        self._tasks: set[asyncio.Future[None]] = set()

    def key(self, policy: Policy, client: str) -> str:
        return _window_key(self._prefix, policy.name, client)

    def take_reserved(self, group: _Group) -> Verdict | None:
        """A slot from the group's reservation, as `hit` would hand it out (no token, no cache read); None
        when there is none left: then ask `hit`."""
        reservation = self._reservations.get(group)
        if reservation is None:
            return None
        now = asyncio.get_running_loop().time()
        verdict = reservation.take(now)
        if verdict is None:  # used up or ended: the one refilled ahead, if it has come
            following = self._next.pop(group, None)
            if following is None or self._line is None:
                return None
            self._release(self._line, group[0], reservation)
            reservation = self._reservations[group] = following
            verdict = reservation.take(now)
            if verdict is None:
                return None
        if not reservation.refilling and 2 * reservation.taken >= reservation.count:
            self._refill(group, reservation)
        return verdict

    def _refill(self, group: _Group, reservation: _Reservation) -> None:
        """Half of a busy client's reservation is used: ask for the next one now (a script run admitting no
        request, only reserving), so its requests rarely wait for Redis when this one runs out. The next one
        is handed out after this one (its slots were counted after this one's); unused slots of either are
        given back when it ends."""
        reservation.refilling = True
        if group in self._open:  # a script run for this client goes out in this loop iteration anyway
            return
        self._open_batch(group, reservation.policy, None)

    async def hit(
        self, policy: Policy, client: str, *, revocation_key: str | None = None, cache_key: str | None = None,
        cache_in_script: bool = False,
    ) -> Verdict:
        """Count one request of `client` under `policy`; raises RedisError/OSError when Redis fails.

        With `cache_key`, the cached bytes come back in the same round trip: pipelined beside the script
        (default; a large value never passes through Lua, which costs Redis a copy) or read by the script
        itself (`cache_in_script`; nothing is read for a refused or revoked request).
        """
        window_key = self.key(policy, client)
        if self._share and not (cache_key is not None and cache_in_script):
            group = (window_key, revocation_key, policy.limit, policy.window)
            if cache_key is None and revocation_key is None:
                verdict = self.take_reserved(group)
                if verdict is not None:
                    return verdict
            return await self._shared_hit(group, policy, revocation_key, cache_key)
        keys = [window_key]
        if revocation_key is not None:
            keys.append(revocation_key)
        in_script = cache_key is not None and cache_in_script
        if in_script:
            keys.append(cache_key)  # type: ignore[arg-type]
        member = f"{self._tag}:{next(self._counter)}"
        args: list[int | str] = [policy.limit, int(policy.window * 1_000_000), member,
                                 int(revocation_key is not None), int(in_script), 1]
        if self._line is not None:
            reply, cached = await self._on_line(self._line, keys, args, None if in_script else cache_key)
            if in_script:
                cached = reply[5]
        elif cache_key is None or in_script:
            reply = await self._script(keys=keys, args=args)
            cached = reply[5]
        else:
            reply, cached = await self._pipelined(keys, args, cache_key)
        allowed, used, reset_us, now_us, revoked = reply[:5]
        return Verdict(
            policy=policy,
            allowed=bool(allowed),
            used=int(used),
            reset_seconds=int(reset_us) / 1_000_000,
            redis_now=int(now_us) / 1_000_000,
            revoked=bool(revoked) if revocation_key is not None else None,
            cached=cached if allowed and not revoked else None,
        )

    # ---- one EVALSHA for the requests of one client in one loop iteration ---------------------------------
    def _shared_hit(self, group: _Group, policy: Policy, revocation_key: str | None,
                    cache_key: str | None) -> asyncio.Future[Verdict]:
        batch = self._open.get(group)
        if batch is None or len(batch.waiters) >= MAX_BATCH:
            batch = self._open_batch(group, policy, revocation_key)
        waiter: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        batch.waiters.append(waiter)
        batch.cache_keys.append(cache_key)
        return waiter

    def _open_batch(self, group: _Group, policy: Policy, revocation_key: str | None) -> _Batch:
        keys = [group[0]] if revocation_key is None else [group[0], revocation_key]
        member = f"{self._tag}:{next(self._counter)}"
        # ARGV: limit, window, member, asks revocation, GET in script, slots wanted, reserve, offset, share
        args: list[Any] = [self._script.sha, len(keys), *keys, policy.limit, int(policy.window * 1_000_000),
                           member, int(revocation_key is not None), 0, 1, 0,
                           int(RESERVE_SECONDS * 1_000_000), RESERVE_SHARE]
        batch = self._open[group] = _Batch(group, args, policy, revocation_key is not None)
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._send_batches)
        self._queued.append(batch)
        return batch

    def _send_batches(self) -> None:
        """Runs once per loop iteration with requests waiting: one EVALSHA per batch, all in one write."""
        batches, self._queued = self._queued, []
        self._open.clear()
        line = self._line
        assert line is not None
        now = asyncio.get_running_loop().time()
        for batch in batches:
            wanted = len(batch.waiters)
            batch.args[-4] = wanted  # ARGV[6]
            batch.args[-3] = self._reserve_for(batch, wanted, now)  # ARGV[7]
            batch.sent_at = now
            sent = line.send_nowait("EVALSHA", *batch.args)
            if sent is None:  # not connected yet
                self._background(self._send_slowly(line, batch))
                continue
            reads: list[asyncio.Future[Any] | None] = []
            last = sent
            for key in batch.cache_keys:  # pipelined behind the script: its replies come after the script's
                read = line.send_nowait("GET", key) if key is not None else None
                reads.append(read)
                last = read or last
            last.add_done_callback(functools.partial(self._settle, line, batch, sent, reads))
        line.flush()

    def _settle(self, line: RedisLine, batch: _Batch, sent: asyncio.Future[Any],
                reads: list[asyncio.Future[Any] | None], _last: asyncio.Future[Any]) -> None:
        # Replies come in order: when the last one is in, so are the script's and every GET's.
        error = _failure(sent) or next((e for e in map(_failure, filter(None, reads)) if e is not None), None)
        if isinstance(error, NoScriptError):  # flushed or restarted Redis: load the script, ask again
            self._background(self._send_slowly(line, batch, reload=True))
        elif error is not None:
            batch.settle(error=error)
        else:
            cached = [read.result() if read is not None else None for read in reads] if any(reads) else None
            reply = sent.result()
            batch.settle(reply, cached)
            if reply[6]:
                self._reserved(line, batch, reply)

    # ---- reservations: a busy anonymous client's next requests admitted without a round trip --------------
    # Exact in the limiter's sense: reserved slots are recorded in Redis before they are handed out (dated
    # RESERVE_SECONDS ahead, so none leaves the window before a request admitted on it would), and the
    # unused ones are removed when the reservation ends. Only for requests that ask Redis nothing else
    # (no token to check against the deny-list, no cache read), and only with ample room (RESERVE_SHARE).
    def _reserve_for(self, batch: _Batch, wanted: int, now: float) -> int:
        if not self._reserve or batch.asks_revocation or any(key is not None for key in batch.cache_keys):
            return 0
        previous = self._reservations.get(batch.group)
        if previous is not None and wanted == 0:  # refilled ahead at half use (_refill): room to grow
            reserve = 2 * previous.count
        elif previous is not None and now - previous.sent_at < 2 * RESERVE_SECONDS:  # busy: grow with demand
            reserve = max(wanted, 2 * previous.taken)
        elif wanted >= 2:  # several requests in one loop iteration
            reserve = wanted
        else:
            return 0
        return min(reserve, MAX_RESERVE, batch.policy.limit // RESERVE_SHARE)

    def _reserved(self, line: RedisLine, batch: _Batch, reply: Any) -> None:
        group = batch.group
        reservation = _Reservation(batch, reply)
        previous = self._reservations.get(group)
        loop = asyncio.get_running_loop()
        if (previous is not None and not batch.waiters and not previous.closed and previous.taken < previous.count
                and loop.time() < previous.expires):  # refilled ahead: queued behind the current one
            queued = self._next.get(group)
            if queued is not None:
                self._release(line, group[0], queued)
            self._next[group] = reservation
        else:
            if previous is not None:
                self._release(line, group[0], previous)
            queued = self._next.pop(group, None)
            if queued is not None:
                self._release(line, group[0], queued)
            self._reservations[group] = reservation
        loop.call_at(reservation.expires, self._release, line, batch.group[0], reservation)
        loop.call_at(reservation.expires + RESERVE_SECONDS, self._forget, batch.group, reservation)

    def _release(self, line: RedisLine, window_key: str, reservation: _Reservation) -> None:
        """Give back what was not used (until then it counted against the client)."""
        if reservation.closed:
            return
        reservation.closed = True
        unused = reservation.unused_members()
        if unused:
            sent = line.send_nowait("ZREM", window_key, *unused)
            if sent is not None:  # best effort: if it fails, the slots expire with the window
                sent.add_done_callback(_failure)

    def _forget(self, group: _Group, reservation: _Reservation) -> None:
        if self._reservations.get(group) is reservation:
            del self._reservations[group]
        if self._next.get(group) is reservation:
            del self._next[group]

    async def _send_slowly(self, line: RedisLine, batch: _Batch, *, reload: bool = False) -> None:
        try:
            for attempt in (1, 2):
                if reload:
                    await line.call("SCRIPT", "LOAD", SLIDING_WINDOW_LUA)
                try:
                    reply = await line.call("EVALSHA", *batch.args)
                except NoScriptError:
                    if attempt == 2:
                        raise
                    reload = True
                    continue
                cached = None
                if any(key is not None for key in batch.cache_keys):
                    cached = [await line.call("GET", key) if key is not None else None for key in batch.cache_keys]
                batch.settle(reply, cached)
                if reply[6]:
                    self._reserved(line, batch, reply)
                return
        except Exception as exc:  # every waiter gets the failure
            batch.settle(error=exc)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # held until done (the loop keeps only weak references to tasks)
        task.add_done_callback(self._tasks.discard)

    async def _on_line(
        self, line: RedisLine, keys: list[str], args: list[int | str], cache_key: str | None
    ) -> tuple[Any, Any]:
        for attempt in (1, 2):
            evaluated = await line.send("EVALSHA", self._script.sha, len(keys), *keys, *args)
            read = await line.send("GET", cache_key) if cache_key is not None else None
            try:
                reply = await line.reply(evaluated)
            except NoScriptError:
                if read is not None:
                    await line.reply(read)
                if attempt == 2:
                    raise
                await line.call("SCRIPT", "LOAD", SLIDING_WINDOW_LUA)  # flushed or restarted Redis
                continue
            return reply, (await line.reply(read) if read is not None else None)
        raise AssertionError("unreachable")

    async def _pipelined(self, keys: list[str], args: list[int | str], cache_key: str) -> tuple[Any, Any]:
        for attempt in (1, 2):
            pipe = self._redis.pipeline(transaction=False)
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            pipe.get(cache_key)
            try:
                reply, cached = await pipe.execute()
                return reply, cached
            except NoScriptError:
                if attempt == 2:
                    raise
                await self._redis.script_load(SLIDING_WINDOW_LUA)  # flushed or restarted Redis
        raise AssertionError("unreachable")


def too_many_requests(verdict: Verdict, *, graphql: bool = False) -> web.Response:
    """The seed's 429 body; GraphQL callers also get a spec-shaped `errors` entry they already parse."""
    headers = verdict.headers()
    headers["Retry-After"] = str(verdict.retry_after)
    body: dict[str, Any] = {"error": "Too Many Requests", "message": RATE_LIMIT_MESSAGE,
                            "retryAfter": verdict.retry_after}
    if graphql:
        body["errors"] = [{"message": RATE_LIMIT_MESSAGE,
                           "extensions": {"code": "RATE_LIMITED", "retryAfter": verdict.retry_after}}]
    return web.json_response(body, status=429, headers=headers)


def limiter_unavailable() -> web.Response:
    body = {"error": "Service Unavailable", "message": "Sign-in is unavailable right now. Please retry shortly."}
    return web.json_response(body, status=503, headers={"Retry-After": "5"})


def _failure(future: asyncio.Future[Any]) -> BaseException | None:
    if future.cancelled():
        return RedisConnectionError("Redis call cancelled")
    return future.exception()


# A hook the response cache can register: the cache key this request would be answered from (or None),
# read in the limiter's round trip; the bytes found land in request[PREFETCHED_CACHE].
CacheKeyHook = Callable[[web.Request, Principal], Awaitable[str | None]]
CACHE_KEY_HOOK: web.AppKey[CacheKeyHook] = web.AppKey("ratelimit_cache_key_hook")
# bytes | None; absent when nothing was looked up
PREFETCHED_CACHE: web.RequestKey[bytes | None] = web.RequestKey("prefetched_cache")
RATE_LIMIT_VERDICT = web.RequestKey("ratelimit_verdict", Verdict)


async def count_request(
    limiter: SlidingWindowLimiter, policy: Policy, client: str, *,
    revocation_key: str | None = None, cache_key: str | None = None, cache_in_script: bool = False,
) -> Verdict | None:
    """The verdict, or None when Redis cannot be reached (the caller applies the policy's failure mode)."""
    try:
        return await limiter.hit(policy, client, revocation_key=revocation_key, cache_key=cache_key,
                                 cache_in_script=cache_in_script)
    except (RedisError, OSError, TimeoutError):
        outcome = "fail_closed" if policy.name == "signin" else "fail_open"
        RATE_LIMIT_UNAVAILABLE.labels(policy.name, outcome).inc()
        return None


def record_rejection(policy: Policy) -> None:
    RATE_LIMIT_REJECTIONS.labels(policy.name).inc()


# Paths never limited: load-balancer probes and the metrics scraper.
EXEMPT_PATHS = frozenset({"/metrics", "/health", "/healthz", "/readyz"})
SIGNIN_PATH_PREFIX = "/auth/"


class RateLimiting:
    """The limiter, its tiers and the proxy setting of one app."""

    def __init__(self, settings: Settings) -> None:
        self.policies = Policies.from_settings(settings)
        self.trusted_hops = settings.trusted_proxy_hops
        self.prefix = settings.redis_prefix
        self.cache_in_script = False  # see SlidingWindowLimiter.hit; pipelined is cheaper for large answers
        self.redis_url = settings.redis_url
        self._line: RedisLine | None = None
        self._limiter: SlidingWindowLimiter | None = None
        self._anonymous_groups: dict[str | None, _Group] = {}  # client → its anonymous window's batch group

    def attach(self, redis: aioredis.Redis) -> None:
        url = self.redis_url
        self._line = RedisLine(url, timeout=1.0) if url is not None and supports(url) else None
        self._limiter = SlidingWindowLimiter(redis, self.prefix, self._line)

    async def close(self) -> None:
        if self._line is not None:
            await self._line.close()

    @property
    def limiter(self) -> SlidingWindowLimiter:
        if self._limiter is None:
            raise RuntimeError("RateLimiting has no Redis client yet (the app has not started)")
        return self._limiter

    def policy_for(self, request: web.Request, signed_in: bool) -> Policy:
        if request.path.startswith(SIGNIN_PATH_PREFIX):
            return self.policies.signin
        return self.policies.authenticated if signed_in else self.policies.anonymous

    def reserved_verdict(self, request: web.Request) -> Verdict | None:
        """For a request without a token, in an app without a cache-key hook: the verdict `count_and_judge`
        would reach from the client's reserved slots, without a coroutine or I/O; None: call it instead."""
        if request.method == "OPTIONS" or self._limiter is None:
            return None
        path = request.path
        if path in EXEMPT_PATHS or path.startswith(SIGNIN_PATH_PREFIX):
            return None
        # keyed by the TCP peer when no proxy is trusted (the address is then the peer's, normalised)
        peer = request.remote if self.trusted_hops <= 0 else self.client_address(request)
        group = self._anonymous_groups.get(peer)
        if group is None:
            policy = self.policies.anonymous
            if len(self._anonymous_groups) >= 65536:
                self._anonymous_groups.clear()
            group = self._anonymous_groups[peer] = (
                self._limiter.key(policy, f"{self.client_address(request)}|-"), None, policy.limit, policy.window)
        return self._limiter.take_reserved(group)

    def client_address(self, request: web.Request) -> str:
        if self.trusted_hops <= 0:  # the header is never read then: skip collecting it
            return client_ip(request.remote, (), 0)
        return client_ip(request.remote, request.headers.getall("X-Forwarded-For", ()), self.trusted_hops)


RATE_LIMITING: web.AppKey[RateLimiting] = web.AppKey("rate_limiting", RateLimiting)


async def count_and_judge(
    request: web.Request, check: TokenCheck | None = None
) -> tuple[web.Response | None, Verdict | None]:
    """(refusal, None) for a 429/503; (None, verdict) when admitted; (None, None) when exempt or fail-open.
    `check`: the request's token check when the caller already has it (`AccessControl.check_header`)."""
    if request.method == "OPTIONS" or request.path in EXEMPT_PATHS:
        return None, None
    app = request.app
    limiting = app[RATE_LIMITING]
    control = app[ACCESS_CONTROL]
    if check is None:
        check = control.check_header(request)  # CPU only; a bad token still counts against its IP
    user = check.token.user_id if check.token is not None else None
    policy = limiting.policy_for(request, signed_in=user is not None)
    client = f"{limiting.client_address(request)}|{user or '-'}"
    revocation_key = control.revocation_key(check.token.jti) if check.token is not None else None
    cache_key = None
    hook = app.get(CACHE_KEY_HOOK)
    if hook is not None and check.error is None and policy is not limiting.policies.signin:
        principal = check.token.principal() if check.token is not None else ANONYMOUS
        cache_key = await hook(request, principal)
    verdict = await count_request(limiting.limiter, policy, client, revocation_key=revocation_key,
                                  cache_key=cache_key, cache_in_script=limiting.cache_in_script)
    if verdict is None:
        if policy is limiting.policies.signin:
            return limiter_unavailable(), None
        request[REDIS_UNAVAILABLE] = True
        return None, None
    if not verdict.allowed:
        record_rejection(policy)
        return too_many_requests(verdict, graphql=request.path.endswith("/graphql")), None
    request[RATE_LIMIT_VERDICT] = verdict
    if verdict.revoked is not None:
        request[REVOCATION_CHECKED] = verdict.revoked
    if cache_key is not None:
        request[PREFETCHED_CACHE] = verdict.cached
    return None, verdict


async def answer_with_limit_headers(
    request: web.Request, verdict: Verdict | None, answer: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Run the rest of the chain; the admitted request's X-RateLimit-*/RateLimit headers go on whatever comes
    back, error answers raised as exceptions included."""
    if verdict is None:
        return await answer(request)
    try:
        response = await answer(request)
    except web.HTTPException as exc:
        exc.headers.update(verdict.headers())
        raise
    if not response.prepared:
        response.headers.update(verdict.headers())
    return response


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    refusal, verdict = await count_and_judge(request)
    if refusal is not None:
        return refusal
    return await answer_with_limit_headers(request, verdict, handler)
