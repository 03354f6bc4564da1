"""Thin async Solana JSON-RPC client over raw aiohttp: retries, backoff, Retry-After, failover, size bound.

Why raw aiohttp and not `solana.rpc.async_api.AsyncClient`: we need to see the HTTP status and headers
(429 + Retry-After), cap the body size while it streams in, fail over between several URLs per request, and
parse 60 MB getVoteAccounts bodies with orjson straight into dicts for our own validating parsers. The
`solana` client hides the first three and builds solders objects we would convert back. Pubkeys are still
validated with `solders` (in `parse.py`).

    async with RpcClient(["http://127.0.0.1:8899"]) as rpc:
        info = await rpc.call("getEpochInfo")

What is retried (each retry moves to the next URL; a URL already tried in this call is retried after
exponential backoff with full jitter, and never earlier than its own Retry-After): connection errors,
timeouts, HTTP 5xx/408/429, truncated or non-JSON bodies, JSON-RPC "node unhealthy/behind" errors, and
answers the caller's `check` rejects as stale.
What is not: other HTTP 4xx, other JSON-RPC errors, a body over the size bound. Every failure surfaces as an
`RpcError` subclass naming the method, the URL and the cause.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from stream_app.settings import Settings

# JSON-RPC errors that mean "this node cannot answer right now": try another node / later.
RETRYABLE_RPC_CODES = frozenset({
    -32005,  # node is unhealthy / behind
    -32004,  # block not available for slot
    -32014,  # block status not yet available
    -32016,  # minimum context slot not reached
    -32603,  # internal error
})
RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "sol-stake/0.1 (+https://github.com/sol-stake)"
MAX_RETRY_AFTER_KEPT = 24 * 3600.0  # a Retry-After beyond a day is treated as a day


class RpcError(Exception):
    """An RPC call failed for good. `method` and `url` say which call and where it last went."""

    def __init__(self, message: str, *, method: str = "", url: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.attempts = attempts


class RpcUnavailable(RpcError):
    """No node answered usefully: network error, timeout, 5xx or 429 on every attempt."""


class RpcMalformed(RpcError):
    """The body was not a JSON-RPC 2.0 answer (truncated, not JSON, wrong envelope)."""


class RpcStale(RpcError):
    """Every node that answered was behind what we have already seen (a lagging node)."""


class RpcTooLarge(RpcError):
    """The body exceeded RPC_MAX_RESPONSE_BYTES; not retried (another node would send the same)."""


class RpcResponseError(RpcError):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, message: str, *, code: int, data: Any = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.code = code
        self.data = data


class _Retry(Exception):
    """One attempt failed in a way worth retrying elsewhere."""

    def __init__(self, error: RpcError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class StaleAnswer(Exception):
    """Raised by a `check` callback: this node's answer is behind; try another node."""


@dataclass
class _Endpoint:
    url: str
    not_before: float = 0.0  # monotonic time before which we do not call it again (Retry-After)


@dataclass
class RpcStats:
    """Counters for observability and tests: attempts, retries by reason, failovers."""

    requests: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    failovers: int = 0
    waits: list[float] = field(default_factory=list)  # every backoff / Retry-After sleep, seconds


async def gather_all(*coros: Awaitable[Any]) -> list[Any]:
    """Run all, results in order; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(c)) for c in coros]
    except BaseExceptionGroup as eg:
        first = eg.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3). None if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    if attempt <= 0:
        return 0.0
    return rng.uniform(0.0, min(cap, base * (2 ** (attempt - 1))))


class RpcClient:
    """JSON-RPC over HTTP to one or more Solana RPC URLs, tried in turn.

    Keep one client alive between fetches when you can: it remembers each URL's Retry-After and which URL
    answered last.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 20.0,
        max_retries: int = 4,
        max_response_bytes: int = 256 * 1024 * 1024,
        backoff_base: float = 0.25,
        backoff_cap: float = 8.0,
        max_retry_after: float = 60.0,  # a longer Retry-After on every URL fails the call at once
        concurrency: int = 8,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not urls:
            raise ValueError("RpcClient needs at least one URL")
        self.endpoints = [_Endpoint(u) for u in urls]
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_response_bytes = max_response_bytes
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.concurrency = concurrency
        self.stats = RpcStats()
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._session = session
        self._own_session = session is None
        self._preferred = 0
        self._ids = itertools.count(1)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RpcClient:
        kwargs: dict[str, Any] = {
            "timeout": settings.rpc_timeout,
            "max_retries": settings.rpc_max_retries,
            "max_response_bytes": settings.rpc_max_response_bytes,
        }
        kwargs.update(overrides)
        return cls(settings.solana_rpc_urls, **kwargs)

    @property
    def url(self) -> str:
        """The URL currently preferred (the last one that answered)."""
        return self.endpoints[self._preferred].url

    async def __aenter__(self) -> RpcClient:
        self._ensure_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=max(4, self.concurrency * 2))
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})
            self._own_session = True
        return self._session

    # ------------------------------------------------------------------------------------------- calls

    async def call(
        self, method: str, params: list[Any] | None = None, *, check: Callable[[Any], None] | None = None
    ) -> Any:
        """`result` of one JSON-RPC call, after retries and failover. `check(result)` may raise StaleAnswer."""
        attempts = self.max_retries + 1
        last: RpcError | None = None
        tried: Counter[int] = Counter()
        for attempt in range(attempts):
            index = self._pick(attempt)
            endpoint = self.endpoints[index]
            wait = max(endpoint.not_before - time.monotonic(), 0.0)
            if wait > self.max_retry_after:  # every URL is rate limited for longer than we would wait
                raise RpcUnavailable(
                    f"{method}: rate limited by every URL for another {wait:.0f} s (Retry-After); not waiting more "
                    f"than {self.max_retry_after:g} s", method=method, url=endpoint.url, attempts=attempt)
            if tried[index]:  # a URL that failed this call: back off; a fresh one is tried at once
                wait = max(wait, backoff_delay(tried[index], self.backoff_base, self.backoff_cap, self._rng))
            tried[index] += 1
            if wait > 0:
                self.stats.waits.append(wait)
                await self._sleep(wait)
            try:
                result = await self._attempt(endpoint.url, method, params or [])
                if check is not None:
                    try:
                        check(result)
                    except StaleAnswer as exc:
                        raise _Retry(RpcStale(f"{method} from {endpoint.url}: {exc}", method=method,
                                              url=endpoint.url)) from None
            except _Retry as retry:
                last = retry.error
                self.stats.retries[type(retry.error).__name__] += 1
                if retry.retry_after is not None:
                    endpoint.not_before = time.monotonic() + min(retry.retry_after, MAX_RETRY_AFTER_KEPT)
                if len(self.endpoints) > 1:
                    self.stats.failovers += 1
                    self._preferred = (index + 1) % len(self.endpoints)
                continue
            self._preferred = index
            return result
        assert last is not None
        last.attempts = attempts
        raise type(last)(f"{last} (gave up after {attempts} attempts over {len(self.endpoints)} URL(s))",
                         method=method, url=last.url, attempts=attempts) from last

    async def call_many(
        self, method: str, params_list: Sequence[list[Any]], *, concurrency: int | None = None
    ) -> list[Any]:
        """Many calls of one method, at most `concurrency` in flight; results in the order of `params_list`."""
        limit = asyncio.Semaphore(concurrency or self.concurrency)

        async def one(params: list[Any]) -> Any:
            async with limit:
                return await self.call(method, params)

        return await gather_all(*(one(p) for p in params_list))

    def _pick(self, attempt: int) -> int:
        """The preferred URL first; on a retry, the next one that is not waiting out a Retry-After."""
        if attempt == 0 or len(self.endpoints) == 1:
            return self._preferred
        now = time.monotonic()
        order = [(self._preferred + k) % len(self.endpoints) for k in range(len(self.endpoints))]
        ready = [i for i in order if self.endpoints[i].not_before <= now]
        if ready:
            return ready[0]
        return min(order, key=lambda i: self.endpoints[i].not_before)

    async def _attempt(self, url: str, method: str, params: list[Any]) -> Any:
        request_id = next(self._ids)
        payload = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        session = self._ensure_session()
        self.stats.requests += 1

        def fail(kind: type[RpcError], why: str, retry_after: float | None = None) -> _Retry:
            return _Retry(kind(f"{method} at {url}: {why}", method=method, url=url), retry_after)

        try:
            async with session.post(
                url, data=payload, headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                if resp.status in RETRYABLE_HTTP:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    raise fail(RpcUnavailable, f"HTTP {resp.status}", retry_after)
                if resp.status >= 400:
                    raise RpcResponseError(f"{method} at {url}: HTTP {resp.status}", code=resp.status,
                                           method=method, url=url)
                if resp.content_length is not None and resp.content_length > self.max_response_bytes:
                    raise RpcTooLarge(f"{method} at {url}: body of {resp.content_length} bytes exceeds the "
                                      f"{self.max_response_bytes}-byte bound", method=method, url=url)
                body = await self._read_bounded(resp, method, url)
        except TimeoutError:
            raise fail(RpcUnavailable, f"no answer within {self.timeout:g}s") from None
        except aiohttp.ClientPayloadError as exc:
            raise fail(RpcMalformed, f"truncated body ({exc.__class__.__name__})") from None
        except aiohttp.ClientError as exc:
            raise fail(RpcUnavailable, f"{exc.__class__.__name__}: {exc}") from None
        return self._unwrap(body, request_id, method, url, fail)

    async def _read_bounded(self, resp: aiohttp.ClientResponse, method: str, url: str) -> bytearray:
        chunks = bytearray()
        async for chunk in resp.content.iter_chunked(1 << 16):
            chunks += chunk
            if len(chunks) > self.max_response_bytes:
                raise RpcTooLarge(f"{method} at {url}: body exceeds the {self.max_response_bytes}-byte bound",
                                  method=method, url=url)
        return chunks  # orjson reads a bytearray as is: no copy of a 60 MB body

    @staticmethod
    def _unwrap(body: bytearray, request_id: int, method: str, url: str,
                fail: Callable[[type[RpcError], str], _Retry]) -> Any:
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise fail(RpcMalformed, f"body is not JSON ({exc}); {len(body)} bytes") from None
        if not isinstance(envelope, dict) or envelope.get("jsonrpc") != "2.0":
            raise fail(RpcMalformed, "not a JSON-RPC 2.0 envelope")
        if envelope.get("id") != request_id:
            raise fail(RpcMalformed, f"answer id {envelope.get('id')!r} does not match request id {request_id}")
        error = envelope.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message") if isinstance(error, dict) else repr(error)
            if not isinstance(code, int) or isinstance(code, bool):
                raise fail(RpcMalformed, f"error object without an integer code: {str(error)[:200]}")
            if code in RETRYABLE_RPC_CODES:
                raise fail(RpcUnavailable, f"RPC error {code}: {str(message)[:200]}")
            raise RpcResponseError(f"{method} at {url}: RPC error {code}: {str(message)[:200]}", code=code,
                                   data=error.get("data"), method=method, url=url)
        if "result" not in envelope:
            raise fail(RpcMalformed, "envelope has neither result nor error")
        return envelope["result"]
