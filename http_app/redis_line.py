"""A lean Redis connection for the per-request hot path (the limiter's one round trip).

Every HTTP request costs one Redis command; through redis-py's pool each command pays for acquiring and
releasing a connection and its generic retry machinery, which measured several times the cost of the Redis
work itself. `RedisLine` keeps one TCP connection; the commands issued during one event-loop iteration leave
in a single write (one syscall for every request in flight), and since Redis answers in order, replies are
matched to a FIFO of futures.

Failure rules: a connection error fails every waiting call with `redis.exceptions.ConnectionError`; a call
that outlives `timeout` fails with `TimeoutError` and the connection is dropped (a late reply must never be
matched to the next caller; every call still waiting fails with it); the next call reconnects. The deadline
is one timer per write, guarding its last reply (replies come in order), not one per call.
Error replies raise ResponseError / NoScriptError.
Only plain `redis://` URLs are handled (TLS, Unix sockets: use redis-py); `supports(url)` says which.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError


def supports(url: str | None) -> bool:
    return url is not None and urlsplit(url).scheme == "redis"


class _Protocol(asyncio.Protocol):
    def __init__(self, line: RedisLine) -> None:
        self.line = line
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.line.current is not self:  # a dropped connection: its replies belong to nobody now
            return
        self.reader.feed(data)
        waiting = self.line.waiting
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if not waiting:  # a reply nobody waits for: the stream is out of step, start over
                self.line.drop(RedisConnectionError("unexpected reply from Redis"))
                return
            future = waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                text = str(reply)
                future.set_exception(NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.line.current is self:  # not the echo of an earlier drop() while a new connection serves
            self.line.drop(RedisConnectionError(f"Redis connection lost: {exc or 'closed by server'}"))


class RedisLine:
    def __init__(self, url: str, *, timeout: float = 1.0) -> None:
        if not supports(url):
            raise ValueError("RedisLine handles redis:// URLs only")
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        path = parts.path.strip("/")
        self.db = int(path) if path.isdigit() else 0
        self.timeout = timeout
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._unsent: list[bytes] = []
        self._flush_scheduled = False

    @property
    def current(self) -> _Protocol | None:
        return self._protocol

    async def call(self, *args: str | int | float | bytes) -> Any:
        """One command; replies as hiredis decodes them (bytes, int, list, None)."""
        future = await self.send(*args)
        return await self.reply(future)

    async def send(self, *args: str | int | float | bytes) -> asyncio.Future[Any]:
        """Write a command now, collect its reply later: sends issued back to back share one round trip."""
        future = self.send_nowait(*args)
        if future is None:
            await self._connect()
            future = self.send_nowait(*args)
            if future is None:
                raise RedisConnectionError("Redis connection lost while connecting")
        return future

    def send_nowait(self, *args: str | int | float | bytes) -> asyncio.Future[Any] | None:
        """`send` without connecting: None when there is no open connection (then use `send`)."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append(future)
        self._unsent.append(hiredis.pack_command(cast(Any, args)))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def flush(self) -> None:
        """Write what was sent so far now instead of at the end of this loop iteration."""
        if self._unsent:
            self._write()

    def _flush(self) -> None:
        """Everything sent during one loop iteration leaves in one write (one syscall for many requests)."""
        self._flush_scheduled = False
        if self._unsent:
            self._write()

    def _write(self) -> None:
        unsent, self._unsent = self._unsent, []
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            protocol.transport.write(b"".join(unsent))
            self._guard(self.waiting[-1])

    def _guard(self, last: asyncio.Future[Any]) -> None:
        """Fail everything still waiting if `last` (and so every earlier reply) is not in by the deadline."""
        asyncio.get_running_loop().call_later(self.timeout, self._expire, last)

    def _expire(self, last: asyncio.Future[Any]) -> None:
        if not last.done():
            self.drop(TimeoutError(f"Redis did not answer within {self.timeout:g} s"))

    async def reply(self, future: asyncio.Future[Any]) -> Any:
        return await future  # bounded: the write that carried it set a deadline (`_guard`)

    def drop(self, error: Exception) -> None:
        """Close the connection and fail everything still waiting on it."""
        protocol, self._protocol = self._protocol, None
        self._unsent = []
        waiting, self.waiting = self.waiting, collections.deque()
        for future in waiting:
            if not future.done():
                future.set_exception(error)
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def close(self) -> None:
        self.drop(RedisConnectionError("RedisLine closed"))

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and self._protocol.transport is not None \
                    and not self._protocol.transport.is_closing():
                return self._protocol
            loop = asyncio.get_running_loop()
            try:
                _transport, protocol = await asyncio.wait_for(
                    loop.create_connection(lambda: _Protocol(self), self.host, self.port), self.timeout
                )
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(f"cannot connect to Redis at {self.host}:{self.port}: {exc}") from exc
            self._protocol = protocol
            if self.password is not None:
                auth = (self.username, self.password) if self.username else (self.password,)
                await self.reply(await self._send_on(protocol, "AUTH", *auth))
            if self.db:
                await self.reply(await self._send_on(protocol, "SELECT", self.db))
            return protocol

    async def _send_on(self, protocol: _Protocol, *args: str | int) -> asyncio.Future[Any]:
        assert protocol.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        protocol.transport.write(hiredis.pack_command(cast(Any, args)))
        self._guard(future)
        return future
