"""Shared pieces of the failure tests: a real worker process on a simulated cluster, waiting, and reading back
what the database kept. Processes come from tests/pipeline/processes.py (logs kept for failures)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from stream_app.settings import Settings
from tests.pipeline import processes
from tests.pipeline.processes import Proc


def worker_env(settings: Settings, database_url: str, redis_url: str, rpc_url: str, **extra: str) -> dict[str, str]:
    values = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_PREFIX": settings.redis_prefix,
              "SOLANA_RPC_URL": rpc_url, "FETCH_INTERVAL": "3600", "RUN_TIMEOUT": "600", "STREAM_PARTITIONS": "2",
              "LOG_LEVEL": "info"}
    values.update(extra)
    return processes.base_env(**values)


def start_worker(name: str, env: dict[str, str], log_dir: Path) -> Proc:
    """A `python -m stream_app.worker`; its metrics on env's WORKER_METRICS_PORT, else on a free port."""
    if "WORKER_METRICS_PORT" in env:
        return Proc(name, [sys.executable, "-m", "stream_app.worker"], env, log_dir)
    return processes.worker(name, env, log_dir)


async def wait_for(predicate: Callable[[], Awaitable[Any]], what: str, seconds: float,
                   procs: Sequence[Proc] = ()) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        for proc in procs:
            if proc.popen.poll() is not None:
                raise AssertionError(f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}\n"
                                     f"{proc.tail()}")
        await asyncio.sleep(0.1)
    logs = "\n".join(p.tail() for p in procs)
    raise AssertionError(f"timed out after {seconds:g} s waiting for {what}\n{logs}")


async def finished_run(pool: asyncpg.Pool, run_id: str | None) -> asyncpg.Record | None:
    """The run's row once it left `running` (run_id None: the first run there is)."""
    if run_id is None:
        row = await pool.fetchrow("SELECT * FROM scoring_runs ORDER BY run_date LIMIT 1")
    else:
        row = await pool.fetchrow("SELECT * FROM scoring_runs WHERE id = $1", run_id)
    return row if row is not None and row["status"] != "running" else None


async def run_scores(pool: asyncpg.Pool, run_id: str) -> dict[str, float]:
    rows = await pool.fetch("SELECT v.vote_account, t.score FROM trust_scores t JOIN validators v "
                            "ON v.id = t.validator_id WHERE t.scoring_run_id = $1", run_id)
    return {r["vote_account"]: r["score"] for r in rows}


async def run_failures(pool: asyncpg.Pool, run_id: str) -> dict[str, str]:
    rows = await pool.fetch("SELECT vote_account, error FROM scoring_failures WHERE scoring_run_id = $1", run_id)
    return {r["vote_account"]: r["error"] for r in rows}


async def table_state(pool: asyncpg.Pool, skip_columns: frozenset[str] = frozenset({"updated_at"})
                      ) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every public table as sorted text tuples (columns in `skip_columns` left out)."""
    out: dict[str, list[tuple[str, ...]]] = {}
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    for t in tables:
        name = t["tablename"]
        cols = [c["column_name"] for c in await pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 "
            "ORDER BY ordinal_position", name) if c["column_name"] not in skip_columns]
        if not cols:
            continue
        select = ", ".join(f'"{c}"::text' for c in cols)
        rows = await pool.fetch(f'SELECT {select} FROM "{name}"')
        out[name] = sorted(tuple("" if v is None else v for v in r.values()) for r in rows)
    return out
