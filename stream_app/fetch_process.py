"""The leader worker's fetcher: each cycle runs in `python -m stream_app.fetch_once` (see that module for why).

Everything around the cycle stays in the worker (sweeps, fetch requests, the due check, metrics); only
`cycle` moves. Bookkeeping is the same as in-process: the child records its own failed runs exactly as
`Fetcher.cycle` does. When the child dies without a report, the run is recorded as failed here, unless it was
stopped by SIGTERM/SIGINT (the worker is stopping; an in-process cycle would have been cancelled and left to
the sweep just the same). The child gets SIGTERM if the worker dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from stream_app.fetcher import CycleOutcome, Fetcher
from stream_app.records import ClusterContext, RunHeader, ValidatorRecord
from stream_app.settings import Settings

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds a child asked to stop (the worker is stopping) may take before SIGKILL
_PR_SET_PDEATHSIG = 1


class FetchStopped(Exception):
    """The child was stopped by SIGTERM/SIGINT before it reported."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _no_produce(header: RunHeader, context: ClusterContext, records: Sequence[ValidatorRecord]) -> None:
    raise RuntimeError("ProcessFetcher produces in its child process")


class ProcessFetcher(Fetcher):
    def __init__(self, settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, *, database_url: str,
                 redis_url: str, rpc_urls: Sequence[str] | None = None) -> None:
        super().__init__(settings, pool, redis, _no_produce, rpc_urls=rpc_urls)
        self.database_url = database_url
        self.redis_url = redis_url

    def child_env(self) -> dict[str, str]:
        """The worker's environment, with this fetcher's settings that decide where and how records go."""
        s = self.settings
        return dict(os.environ, DATABASE_URL=self.database_url, REDIS_URL=self.redis_url,
                    REDIS_PREFIX=s.redis_prefix, STREAM_PARTITIONS=str(s.stream_partitions),
                    RPC_TIMEOUT=repr(s.rpc_timeout), RPC_MAX_RETRIES=str(s.rpc_max_retries),
                    RPC_MAX_RESPONSE_BYTES=str(s.rpc_max_response_bytes), RUN_TIMEOUT=repr(s.run_timeout))

    async def cycle(self, trigger: str, *, run_id: str | None = None, actor: str | None = None) -> CycleOutcome:
        self._last_attempt = time.monotonic()
        run_id = run_id or str(uuid.uuid4())
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="solstake-fetch-") as tmp:
            state, report = Path(tmp) / "state.pickle", Path(tmp) / "report.json"
            state.write_bytes(pickle.dumps(self.source_state))
            argv = [sys.executable, "-m", "stream_app.fetch_once", "--trigger", trigger, "--run-id", run_id,
                    "--state", str(state), "--report", str(report)]
            if actor is not None:
                argv += ["--actor", actor]
            for url in self.rpc_urls:
                argv += ["--rpc-url", url]
            proc = await asyncio.create_subprocess_exec(*argv, env=self.child_env(), stdin=asyncio.subprocess.DEVNULL,
                                                        preexec_fn=_die_with_parent)
            try:
                code = await proc.wait()
            except asyncio.CancelledError:
                await _stop(proc)
                raise
            if report.exists():
                data = orjson.loads(report.read_bytes())
                with contextlib.suppress(Exception):  # losing it costs only extra RPC calls next time
                    self.source_state = pickle.loads(state.read_bytes())
                _add_counters(data.get("counters") or {})
                return CycleOutcome(**data["outcome"])
        if code in (-signal.SIGTERM, -signal.SIGINT):
            # As an in-process cycle of a stopping worker (cancelled): nothing recorded, the sweep closes the run.
            raise FetchStopped(f"fetch process of run {run_id} stopped by signal {-code}")
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return await self._fail(run_id, f"fetch process {how} before finishing the cycle", trigger, actor, started)


async def _stop(proc: Any) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_GRACE)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _add_counters(counters: dict[str, Any]) -> None:
    from stream_app import metrics
    from stream_app.fetch_once import REPORTED_COUNTERS

    for name in REPORTED_COUNTERS:
        counter = getattr(metrics, name)
        for labels, value in counters.get(name) or []:
            (counter.labels(**labels) if labels else counter).inc(value)
