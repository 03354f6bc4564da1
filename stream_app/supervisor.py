"""`solstake run`: the whole system in one command, like a Procfile manager with batteries.

1. PostgreSQL and Redis: the configured URLs, or embedded servers in development (kept between runs).
2. `release` from the Procfile (migrations) must succeed before anything else starts.
3. Solana RPC: the configured URL(s) are probed; in development, if none answers and SIMULATOR_FALLBACK
   is on, the built-in simulator is started instead, loudly, and recorded in Redis
   (`stream_app.rpc_fallback`) so /health, systemStats and every run's `source` say so.
4. Every other Procfile process (worker times `--scale`, web) runs with explicit URLs in its environment,
   its output prefixed with its name.
5. Ctrl-C / SIGTERM stops the children (web first, then workers, then the simulator), each with a
   grace period, then the embedded servers. If a child dies on its own, everything stops (exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis

from stream_app.embedded import free_port, port_free
from stream_app.procfile import ProcessType, parse_procfile
from stream_app.rpc_fallback import clear_fallback, record_fallback
from stream_app.settings import Settings

STOP_GRACE = 30.0
# Stop order: whatever serves users first, then the processes that must finish their batches.
STOP_ORDER = ("web", "worker", "simulator")


@dataclass
class Child:
    label: str
    kind: str
    argv: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = None
    stopping: bool = False


@dataclass
class Plan:
    """What `solstake run` will start, decided before anything is started."""

    procfile: dict[str, ProcessType]
    scale: dict[str, int] = field(default_factory=dict)

    def children(self, python: str, env: Mapping[str, str], settings: Settings) -> list[Child]:
        out = []
        for name, process in self.procfile.items():
            if name == "release":
                continue
            for index in range(1, self.scale.get(name, 1) + 1):
                child_env = dict(env)
                if name == "worker":
                    child_env["WORKER_METRICS_PORT"] = str(settings.worker_metrics_port + index - 1)
                out.append(Child(f"{name}.{index}", name, process.argv(python), child_env))
        return out


def find_procfile(explicit: str | None = None) -> Path:
    candidates = [Path(explicit)] if explicit else [Path.cwd() / "Procfile",
                                                    Path(__file__).resolve().parent.parent / "Procfile"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no Procfile at {', '.join(str(c) for c in candidates)}")


def parse_scale(items: Sequence[str]) -> dict[str, int]:
    scale = {}
    for item in items:
        name, _, count = item.partition("=")
        if not name or not count.isdigit():
            raise ValueError(f"--scale expects name=count, got {item!r}")
        scale[name] = int(count)
    return scale


async def probe_rpc(urls: Sequence[str], seconds: float) -> str | None:
    """None if one of the URLs answers JSON-RPC, else why none did."""
    reasons = []
    body = {"jsonrpc": "2.0", "id": 1, "method": "getEpochInfo"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session:
        for url in urls:
            try:
                async with session.post(url, json=body) as resp:
                    payload = await resp.json(content_type=None)
                    if isinstance(payload, dict) and ("result" in payload or "error" in payload):
                        return None
                    reasons.append(f"{url}: HTTP {resp.status} without a JSON-RPC answer")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                reasons.append(f"{url}: {type(exc).__name__}: {exc}".rstrip(": "))
    return "; ".join(reasons)


class Supervisor:
    def __init__(self, out: TextIO = sys.stdout, grace: float = STOP_GRACE) -> None:
        self.out = out
        self.grace = grace
        self.children: list[Child] = []
        self.exited = asyncio.Event()

    def say(self, label: str, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.out.write(f"{label:<11}| {line}\n")
        self.out.flush()

    async def start(self, child: Child) -> None:
        child.proc = await asyncio.create_subprocess_exec(
            *child.argv, env=child.env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, limit=1 << 20,
        )
        self.children.append(child)
        child.pump = asyncio.create_task(self._pump(child))
        self.say("solstake", f"started {child.label} (pid {child.proc.pid}): {' '.join(child.argv)}")

    async def _pump(self, child: Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        while line := await child.proc.stdout.readline():
            self.say(child.label, line.decode(errors="replace").rstrip("\n"))
        code = await child.proc.wait()
        if not child.stopping:
            self.say("solstake", f"{child.label} exited on its own with status {code}")
            self.exited.set()

    async def run_once(self, label: str, argv: list[str], env: Mapping[str, str]) -> int:
        child = Child(label, label, argv, dict(env))
        child.stopping = True  # finishing is expected
        await self.start(child)
        assert child.proc is not None and child.pump is not None
        code = await child.proc.wait()
        await child.pump
        self.children.remove(child)
        return code

    async def stop(self, child: Child) -> None:
        proc = child.proc
        child.stopping = True
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.grace)
        except TimeoutError:
            self.say("solstake", f"{child.label} did not stop within {self.grace:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        if child.pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await child.pump
        self.say("solstake", f"stopped {child.label} (status {proc.returncode})")

    async def stop_all(self) -> None:
        def rank(child: Child) -> int:
            return STOP_ORDER.index(child.kind) if child.kind in STOP_ORDER else -1

        for kind_rank in sorted({rank(c) for c in self.children}):
            await asyncio.gather(*(self.stop(c) for c in self.children if rank(c) == kind_rank))


async def _start_simulator(sup: Supervisor, settings: Settings, env: dict[str, str], python: str) -> str:
    port = settings.simulator_port if port_free(settings.simulator_port) else free_port()
    argv = [python, "-m", "stream_app.sources.simulator", "--port", str(port), "--seed", str(settings.simulator_seed),
            "--epoch-seconds", f"{settings.simulator_epoch_seconds:g}"]
    child = Child("simulator", "simulator", argv, dict(env))
    await sup.start(child)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sup.exited.is_set():
            raise RuntimeError("the RPC simulator exited during start-up")
        if await probe_rpc([url], 2.0) is None:
            return url
        await asyncio.sleep(0.3)
    raise RuntimeError(f"the RPC simulator did not answer on {url} within 60 s")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return url


def _banner(settings: Settings, env: Mapping[str, str], workers: int, fallback: str | None) -> str:
    web = f"http://127.0.0.1:{settings.port}"
    lines = [
        "sol-stake is running. Where to look:",
        f"  health     {web}/health",
        f"  GraphQL    {web}/graphql",
        f"  metrics    {web}/metrics"
        + "".join(f"  worker.{i + 1}: http://127.0.0.1:{settings.worker_metrics_port + i}/metrics"
                  for i in range(workers)),
        f"  PostgreSQL {_redact(env['DATABASE_URL'])}",
        f"  Redis      {env['REDIS_URL']} (key prefix {settings.redis_prefix!r})",
        f"  Solana RPC {env['SOLANA_RPC_URL']}",
        "  status     .venv/bin/solstake status    (streams, lag, last runs)",
        "Press Ctrl-C to stop everything.",
    ]
    if fallback:
        lines[7:7] = [
            "  !!! SIMULATED CLUSTER: the configured Solana RPC did not answer, so the built-in simulator",
            f"  !!! serves the data instead ({fallback}). Set SIMULATOR_FALLBACK=false to disable.",
        ]
    return "\n".join(lines)


async def supervise(settings: Settings, *, procfile_text: str, scale: dict[str, int],
                    out: TextIO = sys.stdout, grace: float = STOP_GRACE) -> int:
    from stream_app.runtime import resolve_embedded

    python = sys.executable
    plan = Plan(parse_procfile(procfile_text), scale)
    sup = Supervisor(out, grace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    urls, embedded = await asyncio.to_thread(resolve_embedded, settings)
    try:
        env = dict(os.environ, DATABASE_URL=urls.database_url, REDIS_URL=urls.redis_url,
                   PORT=str(settings.port), PYTHONUNBUFFERED="1")
        if "release" in plan.procfile:
            code = await sup.run_once("release", plan.procfile["release"].argv(python), env)
            if code != 0:
                sup.say("solstake", f"release failed with status {code}; nothing else was started")
                return code or 1
        fallback = await _choose_rpc(sup, settings, env, python)
        children = plan.children(python, env, settings)
        for child in children:
            await sup.start(child)
        sup.say("solstake", _banner(settings, env, sum(c.kind == "worker" for c in children), fallback))
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(sup.exited.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        crashed = sup.exited.is_set() and not stop.is_set()
        sup.say("solstake", "a process died; stopping everything" if crashed else "stopping")
        return 1 if crashed else 0
    finally:
        await sup.stop_all()
        await asyncio.to_thread(embedded.stop)
        sup.say("solstake", "stopped")
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _choose_rpc(sup: Supervisor, settings: Settings, env: dict[str, str], python: str) -> str | None:
    """Set SOLANA_RPC_URL for the children; start the simulator when falling back. Returns the reason."""
    redis = aioredis.from_url(env["REDIS_URL"])
    try:
        reason = await probe_rpc(settings.solana_rpc_urls, min(5.0, settings.rpc_timeout))
        if reason is None or settings.production or not settings.simulator_fallback:
            await clear_fallback(redis, settings.redis_prefix)
            env["SOLANA_RPC_URL"] = ",".join(settings.solana_rpc_urls)
            if reason:
                sup.say("solstake", f"WARNING: Solana RPC unreachable ({reason}); runs will fail until it answers")
            return None
        sup.say("solstake", f"WARNING: Solana RPC unreachable ({reason}); starting the built-in simulator")
        url = await _start_simulator(sup, settings, env, python)
        await record_fallback(redis, settings.redis_prefix, url=url, configured=list(settings.solana_rpc_urls),
                              reason=reason)
        env["SOLANA_RPC_URL"] = url
        return reason
    finally:
        await redis.aclose()
