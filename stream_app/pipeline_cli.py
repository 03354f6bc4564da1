"""The pipeline's `solstake` subcommands: run, fetch, status, verify (registered in stream_app/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from stream_app.runtime import ServiceURLs
from stream_app.settings import Settings


def attach(settings: Settings) -> ServiceURLs | None:
    """URLs of the running system. Embedded servers are adopted if running, never started nor stopped."""
    from stream_app.runtime import resolve_embedded

    root = settings.embedded_dir
    if settings.database_url is None and not (root / "pg" / "postmaster.pid").exists():
        return None
    if settings.redis_url is None and not (root / "redis" / "server.pid").exists():
        return None
    urls, _embedded = resolve_embedded(settings)  # adopts; the running `solstake run` owns them
    return urls


def _not_running() -> int:
    print("solstake: no running system found (DATABASE_URL/REDIS_URL unset and no embedded servers up); "
          "start it with `make run`", file=sys.stderr)
    return 2


# --- run ------------------------------------------------------------------------------------------------

def configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--procfile", help="Procfile to run (default: ./Procfile)")
    parser.add_argument("--scale", action="append", default=[], metavar="NAME=COUNT",
                        help="processes of a type, e.g. --scale worker=2")


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.procfile import ProcfileError
    from stream_app.supervisor import find_procfile, parse_scale, supervise

    try:
        procfile = find_procfile(args.procfile)
        scale = parse_scale(args.scale)
        text = procfile.read_text()
        return asyncio.run(supervise(settings, procfile_text=text, scale=scale))
    except (FileNotFoundError, ProcfileError, ValueError) as exc:
        print(f"solstake run: {exc}", file=sys.stderr)
        return 2


# --- fetch ----------------------------------------------------------------------------------------------

def configure_fetch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("when", nargs="?", choices=("now",), default="now",
                        help="`solstake fetch now` reads like the seed's `queue:add fetch` (optional)")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for the run to finish and print its counts")
    parser.add_argument("--actor", default="cli", help="recorded in the audit log")


def cmd_fetch(args: argparse.Namespace, settings: Settings) -> int:
    import redis.asyncio as aioredis

    from stream_app.fetcher import request_fetch

    urls = attach(settings)
    if urls is None:
        return _not_running()

    async def run() -> int:
        from stream_app.db import create_pool
        from stream_app.runs import record_fetch_request

        redis = aioredis.from_url(urls.redis_url)
        try:
            run_id = await request_fetch(redis, settings.redis_prefix, trigger="cli", actor=args.actor)
        finally:
            await redis.aclose()
        pool = await create_pool(urls.database_url, settings, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await record_fetch_request(conn, run_id, "cli", args.actor)
        finally:
            await pool.close()
        print(f"fetch requested: run {run_id} (the leader worker starts it within a second)")
        if args.wait <= 0:
            return 0
        return await _wait_for_run(urls.database_url, run_id, args.wait)

    return asyncio.run(run())


async def _wait_for_run(database_url: str, run_id: str, seconds: float) -> int:
    import asyncpg

    from stream_app.runs import FINAL_STATUSES, run_status

    deadline = time.monotonic() + seconds
    conn = await asyncpg.connect(database_url)
    try:
        while time.monotonic() < deadline:
            row = await run_status(conn, run_id)
            if row is not None and row["status"] in FINAL_STATUSES:
                print(f"run {run_id}: {row['status']}, {row['success_count']} scored, {row['fail_count']} failed "
                      f"of {row['validator_count']}" + (f" ({row['error']})" if row["error"] else ""))
                return 0 if row["status"] == "completed" else 1
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    print(f"run {run_id}: not finished after {seconds:g} s (is a worker running?)", file=sys.stderr)
    return 1


# --- status ---------------------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    urls = attach(settings)
    if urls is None:
        return _not_running()
    return asyncio.run(_status(settings, urls))


async def _status(settings: Settings, urls: ServiceURLs) -> int:
    import asyncpg
    import redis.asyncio as aioredis

    from stream_app.rpc_fallback import read_fallback
    from stream_app.runs import latest_runs
    from stream_app.stream_status import stream_status

    redis = aioredis.from_url(urls.redis_url)
    try:
        if settings.stream_broker and not settings.stream_broker.startswith("redis"):
            print(f"streams: on {settings.stream_broker.split('://')[0]} (lag: use the broker's own tools)")
        else:
            status = await stream_status(redis, settings.redis_prefix)
            print(f"workers: {status.members} live member(s), generation {status.generation}, "
                  f"leader {status.leader or '-'}")
            for tp in status.partitions:
                lag = "" if tp.committed is None else f"  committed {tp.committed:>8}  lag {tp.lag:>7}"
                print(f"  {tp.topic:<36} p{tp.partition}  length {tp.length:>8}  highwater {tp.highwater:>8}{lag}")
        fallback = await read_fallback(redis, settings.redis_prefix)
        if fallback:
            print(f"RPC: SIMULATOR at {fallback.get('url')} (configured RPC unreachable: {fallback.get('reason')})")
    finally:
        await redis.aclose()
    conn = await asyncpg.connect(urls.database_url)
    try:
        runs = await latest_runs(conn, 5)
    finally:
        await conn.close()
    print("last runs:" if runs else "last runs: none yet")
    for r in runs:
        print(f"  {r['run_date']:%Y-%m-%d %H:%M:%S} {r['id']} {r['status']:<9} {r['success_count']:>6} ok "
              f"{r['fail_count']:>4} failed of {r['validator_count']:>6}  epoch {r['epoch']}  {r['trigger']:<5} "
              f"{r['source'] or ''}" + (f"  error: {r['error']}" if r["error"] else ""))
    return 0


# --- verify ---------------------------------------------------------------------------------------------

def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    urls = attach(settings)
    if urls is None:
        return _not_running()

    async def run() -> int:
        import asyncpg

        from stream_app.verify import stale_running_runs, verify_database

        conn = await asyncpg.connect(urls.database_url)
        try:
            counts, results = await verify_database(conn)
            stale = await stale_running_runs(conn, settings.run_timeout)
        finally:
            await conn.close()
        print("rows: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
        failed = 0
        for result in results:
            print(f"  {'ok  ' if result.ok else 'FAIL'} {result.name}")
            for problem in result.problems[:5]:
                print(f"         {_short(problem)}")
            failed += not result.ok
        if stale:
            print(f"  WARN {len(stale)} run(s) still running long past RUN_TIMEOUT (is a worker leader up?)")
        print("database is consistent" if not failed else f"{failed} check(s) failed")
        return 1 if failed else 0

    return asyncio.run(run())


def _short(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items())[:200]
