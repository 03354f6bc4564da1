"""Dependency checks shared by the web health routes and `solstake metrics health`.

Each check is bounded by a timeout, never raises, and returns a `Check`: ok or not, how long it took,
and a few facts worth showing an operator. `run_checks` runs several concurrently, so a health answer
costs the slowest check, not their sum.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis

# Solana's own health check calls a node unhealthy when it is this many slots behind (about a minute).
MAX_SLOT_LAG = 150


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    latency_ms: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok" if self.ok else "fail", "latencyMs": round(self.latency_ms, 2)}
        out.update(self.detail)
        if self.error:
            out["error"] = self.error
        return out


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


async def bounded(name: str, probe: Callable[[], Awaitable[dict[str, Any]]], limit: float,
                  *, judge: Callable[[dict[str, Any]], str | None] | None = None) -> Check:
    """Run `probe` under `limit` seconds; `judge` may fail a probe that answered (returns why, or None)."""
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(probe(), limit)
    except Exception as exc:  # a check reports every failure; it never raises
        return Check(name, False, (time.perf_counter() - started) * 1000, error=_describe(exc))
    elapsed = (time.perf_counter() - started) * 1000
    problem = judge(detail) if judge else None
    return Check(name, problem is None, elapsed, detail, problem)


async def check_postgres(pool: asyncpg.Pool, limit: float) -> Check:
    async def probe() -> dict[str, Any]:
        async with pool.acquire(timeout=limit) as conn:
            await conn.fetchval("SELECT 1")
        return {"poolSize": pool.get_size(), "poolIdle": pool.get_idle_size()}

    return await bounded("db", probe, limit)


async def check_postgres_dsn(dsn: str, limit: float) -> Check:
    async def probe() -> dict[str, Any]:
        conn = await asyncpg.connect(dsn, timeout=limit)
        try:
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        return {"serverVersion": version}

    return await bounded("db", probe, limit)


async def check_redis(redis: aioredis.Redis, limit: float) -> Check:
    async def probe() -> dict[str, Any]:
        await redis.ping()
        return {}

    return await bounded("redis", probe, limit)


def redact_url(url: str) -> str:
    """scheme://host[:port]/path only: API keys in paths or queries of RPC URLs stay out of answers."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = "/" if parts.path in ("", "/") else "/…"
    return f"{parts.scheme}://{host}{path}"


async def _rpc(session: aiohttp.ClientSession, url: str, method: str, params: list[Any]) -> Any:
    """One JSON-RPC call (no batch: some providers refuse batches); a result or an {"error": ...} dict."""
    payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with session.post(url, data=orjson.dumps(payload),
                            headers={"Content-Type": "application/json"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{method}: HTTP {resp.status}")
        body = orjson.loads(await resp.read())
    if not isinstance(body, dict):
        raise RuntimeError(f"{method}: not a JSON-RPC answer")
    return body["result"] if "result" in body else {"error": body.get("error", "no answer")}


async def _probe_solana(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    slot, health = await asyncio.gather(_rpc(session, url, "getSlot", [{"commitment": "processed"}]),
                                        _rpc(session, url, "getHealth", []))
    if not isinstance(slot, int):
        raise RuntimeError(f"getSlot did not answer a slot: {str(slot)[:120]}")
    behind = 0
    if health != "ok":
        data = health.get("error", {}).get("data") if isinstance(health, dict) else None
        behind = int(data.get("numSlotsBehind") or 0) if isinstance(data, dict) else MAX_SLOT_LAG + 1
    return {"url": redact_url(url), "slot": slot, "nodeSlotsBehind": behind}


async def check_solana(urls: Sequence[str], limit: float, *, session: aiohttp.ClientSession | None = None,
                       name: str = "solana") -> Check:
    """Slot and lag of each configured RPC URL. Lag = the node's own numSlotsBehind, or how far its slot
    trails the best of the configured URLs; the check fails when no URL answers within `max` lag."""
    own = session is None
    client = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit))

    async def probe() -> dict[str, Any]:
        answers = await asyncio.gather(*(_probe_solana(client, u) for u in urls), return_exceptions=True)
        endpoints: list[dict[str, Any]] = []
        slots = [a["slot"] for a in answers if isinstance(a, dict)]
        best = max(slots) if slots else 0
        for url, answer in zip(urls, answers, strict=True):
            if isinstance(answer, BaseException):
                error = _describe(answer).replace(url, redact_url(url))  # no API key from a URL in answers
                endpoints.append({"url": redact_url(url), "status": "fail", "error": error})
                continue
            lag = max(answer["nodeSlotsBehind"], best - answer["slot"])
            endpoints.append({**answer, "slotLag": lag,
                              "status": "ok" if lag <= MAX_SLOT_LAG else "lagging"})
        usable = [e for e in endpoints if e["status"] == "ok"]
        primary = usable[0] if usable else endpoints[0]
        return {"url": primary["url"], "slot": primary.get("slot"), "slotLag": primary.get("slotLag"),
                "endpoints": endpoints, "usable": len(usable)}

    def judge(detail: Mapping[str, Any]) -> str | None:
        if detail["usable"]:
            return None
        reasons = "; ".join(f"{e['url']}: {e.get('error') or 'slot lag ' + str(e.get('slotLag'))}"
                            for e in detail["endpoints"])
        return f"no RPC URL usable ({reasons})"

    try:
        return await bounded(name, probe, limit, judge=judge)
    finally:
        if own:
            await client.close()


async def run_checks(checks: Mapping[str, Awaitable[Check]]) -> dict[str, Check]:
    names = list(checks)
    results = await asyncio.gather(*(checks[n] for n in names))
    return dict(zip(names, results, strict=True))
