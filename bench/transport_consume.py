"""Consume throughput of one worker through the `redis://` transport, beside a raw XREAD loop.

    .venv/bin/python -m bench.transport_consume [--quick]

A backlog of records is preloaded into 4 partitions of a private Redis; one worker process drains it
with (a) a trivial agent and (b) an agent doing one table update (and changelog write) per record. Rates are
measured inside the worker from its first to its last record (startup excluded). The baseline is redis-py
reading the same backlog with `XREAD COUNT 2000` over the 4 streams. Targets: >= 15,000 rec/s trivial,
>= 8,000 rec/s with a table update.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .transport_common import KEYS, preload, private_redis, register_topic, row, start_worker


async def raw_xread(client: aioredis.Redis, n: int) -> float:
    positions = {KEYS.stream("events", p): "0-0" for p in range(4)}
    seen = 0
    start = time.perf_counter()
    while seen < n:
        reply: Any = await client.xread(positions, count=2000)  # type: ignore[arg-type]
        for key, entries in reply:
            seen += len(entries)
            positions[key.decode()] = entries[-1][0].decode()
    return n / (time.perf_counter() - start)


async def run_worker(url: str, out: Path, mode: str, n: int, app_id: str) -> tuple[float, float]:
    """(records per wall-clock second, records per CPU second of the worker) from first to last record."""
    proc = start_worker(url, out, mode, n, f"{mode}-worker", BENCH_APP_ID=app_id, BENCH_LOGLEVEL="INFO")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            results = list(out.glob(f"result.{proc.pid}.json"))
            if results:
                result = json.loads(results[0].read_text())
                return result["seen"] / result["seconds"], result["seen"] / max(result["cpu_seconds"], 1e-9)
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited {proc.returncode}; see {out}/{mode}-worker.out")
            await asyncio.sleep(0.2)
        raise TimeoutError("worker did not finish")
    finally:
        proc.terminate()
        proc.wait(30)


async def main(quick: bool) -> None:
    n = 30_000 if quick else 200_000
    with private_redis() as (url, tmp):
        client = aioredis.from_url(url)
        await register_topic(client, "events", 4)
        await preload(client, "events", 4, n)
        baseline = await raw_xread(client, n)
        trivial = await run_worker(url, tmp, "trivial", n, "bench-trivial")
        table = await run_worker(url, tmp, "table", n, "bench-table")
        await client.aclose()
    print(f"consume: backlog of {n:,} records (100-byte values, 1,000 keys, 4 partitions), one worker")
    print(row("baseline: raw redis-py XREAD COUNT 2000", baseline, "rec/s"))
    print(row("redis:// worker, trivial agent", trivial[0], "rec/s", baseline, "target >= 15,000 rec/s"))
    print(row("  same, per CPU-second of the worker", trivial[1], "rec/cpu-s"))
    print(row("redis:// worker, one table update per record", table[0], "rec/s", baseline, "target >= 8,000 rec/s"))
    print(row("  same, per CPU-second of the worker", table[1], "rec/cpu-s"))
    print(f"  (load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
