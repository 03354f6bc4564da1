"""Table recovery speed: a worker rebuilding a table from its changelog streams, beside a raw XRANGE scan.

    .venv/bin/python -m bench.transport_recovery [--quick]

The changelog of the `counts` table is preloaded (4 partitions, JSON keys and values as Faust writes them),
then one worker starts cold and Faust's Recovery reads it back through the transport. The rate is taken
from Faust's own log lines ("Restoring state from changelog topics" -> "Done reading from changelog
topics"), and per CPU-second of the worker between the same two lines. Baseline: redis-py reading the same
streams with XRANGE COUNT 5000. Target: >= 50,000 entries/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from stream_app.transport import scripts

from .transport_common import KEYS, private_redis, register_topic, row, start_worker

CHANGELOG = "bench-counts-changelog"
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


async def preload_changelog(client: aioredis.Redis, n: int, keys: int) -> None:
    await scripts.load_all(client)
    for start in range(0, n, 4000):
        async with client.pipeline(transaction=False) as pipe:
            per_p: dict[int, list[Any]] = {}
            for i in range(start, min(start + 4000, n)):
                k = i % keys
                per_p.setdefault(k % 4, []).extend([0, 3, f'"key-{k}"'.encode(), str(i).encode(), b""])
            for p, fields in per_p.items():
                pipe.execute_command(*scripts.evalsha_args(
                    "produce", [KEYS.stream(CHANGELOG, p), KEYS.counter(CHANGELOG, p), "x"], [0, "", *fields]))
            await pipe.execute()


async def raw_scan(client: aioredis.Redis) -> float:
    start = time.perf_counter()
    total = 0
    for p in range(4):
        cursor: Any = "-"
        while True:
            chunk: Any = await client.xrange(KEYS.stream(CHANGELOG, p), cursor, "+", count=5000)
            total += len(chunk)
            if len(chunk) < 5000:
                break
            cursor = b"(" + chunk[-1][0]
    return total / (time.perf_counter() - start)


def _when(line: str) -> float:
    match = STAMP.match(line)
    assert match, line
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


async def worker_recovery(url: str, out: Path, n: int) -> tuple[float, float]:
    """(entries per wall-clock second, entries per CPU second of the worker) between Faust's recovery log lines."""
    proc = start_worker(url, out, "recovery", 0, "recovery-worker", BENCH_APP_ID="bench", BENCH_LOGLEVEL="INFO")
    log = out / "recovery-worker.out"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Done reading from changelog topics" in text:
                lines = text.splitlines()
                begin = next(_when(x) for x in lines if "Restoring state from changelog topics" in x)
                end = next(_when(x) for x in lines if "Done reading from changelog topics" in x)
                cpu_file = out / f"recovery-cpu.{proc.pid}.json"
                for _ in range(50):
                    if cpu_file.exists():
                        break
                    await asyncio.sleep(0.1)
                cpu = json.loads(cpu_file.read_text())["cpu_seconds"]
                return n / max(end - begin, 1e-3), n / max(cpu, 1e-6)
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited {proc.returncode}; see {log}")
            await asyncio.sleep(0.2)
        raise TimeoutError("recovery did not finish")
    finally:
        proc.terminate()
        proc.wait(30)


async def main(quick: bool) -> None:
    n = 50_000 if quick else 400_000
    distinct = 20_000
    with private_redis() as (url, tmp):
        client = aioredis.from_url(url)
        await register_topic(client, "events", 4)
        await register_topic(client, CHANGELOG, 4)
        await preload_changelog(client, n, distinct)
        baseline = await raw_scan(client)
        ours = await worker_recovery(url, tmp, n)
        await client.aclose()
    print(f"recovery: changelog of {n:,} entries ({distinct:,} keys, 4 partitions), one cold worker")
    print(row("baseline: raw redis-py XRANGE COUNT 5000", baseline, "entries/s"))
    print(row("redis:// worker, Faust Recovery", ours[0], "entries/s", baseline, "target >= 50,000 entries/s"))
    print(row("  same, per CPU-second of the worker", ours[1], "entries/cpu-s"))
    print(f"  (load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
