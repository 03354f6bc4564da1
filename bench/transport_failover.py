"""Failover time: after a SIGKILL, how long until the dead worker's partitions are processed again.

    .venv/bin/python -m bench.transport_failover [--quick] [--session-timeout 5]

Two workers share 4 partitions while records arrive at a steady rate; one is SIGKILLed. The delay is
measured from the kill to the first record of one of its partitions processed by the survivor (each worker
logs `partition wall-time` per record). Baseline: the session timeout itself (the earliest moment a dead
member can be detected). Target: resumed within session timeout + 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from pathlib import Path

import redis.asyncio as aioredis

from .transport_common import preload, private_redis, register_topic, start_worker


def processed(out: Path, pid: int) -> list[tuple[int, float]]:
    path = out / f"times.{pid}"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            rows.append((int(parts[0]), float(parts[1])))
    return rows


async def feed(client: aioredis.Redis, stop: asyncio.Event, rate: int) -> None:
    while not stop.is_set():
        await preload(client, "events", 4, rate // 10, keys=97)
        await asyncio.sleep(0.1)


async def one_failover(session: float) -> float:
    with private_redis() as (url, out):
        client = aioredis.from_url(url)
        await register_topic(client, "events", 4)
        env = {"BENCH_SESSION_TIMEOUT": str(session), "BENCH_LOGLEVEL": "WARNING"}
        a = start_worker(url, out, "failover", 0, "a", **env)
        b = start_worker(url, out, "failover", 0, "b", **env)
        stop = asyncio.Event()
        feeder = asyncio.create_task(feed(client, stop, rate=400))
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # both processing, partitions split
                pa, pb = {p for p, _ in processed(out, a.pid)[-200:]}, {p for p, _ in processed(out, b.pid)[-200:]}
                if pa and pb and not pa & pb:
                    break
                await asyncio.sleep(0.5)
            else:
                raise TimeoutError("workers never split the partitions")
            await asyncio.sleep(2.0)
            victim_partitions = {p for p, _ in processed(out, b.pid)[-200:]}
            killed_at = time.time()
            os.kill(b.pid, signal.SIGKILL)
            while time.time() < killed_at + session + 60:
                resumed = [t for p, t in processed(out, a.pid) if p in victim_partitions and t > killed_at]
                if resumed:
                    return min(resumed) - killed_at
                await asyncio.sleep(0.2)
            raise TimeoutError("the survivor never took over")
        finally:
            stop.set()
            await feeder
            for proc in (a, b):
                if proc.poll() is None:
                    proc.terminate()
                proc.wait(30)
            await client.aclose()


async def main(quick: bool, session: float) -> None:
    runs = 1 if quick else 3
    delays = [await one_failover(session) for _ in range(runs)]
    print(f"failover: 2 workers, 4 partitions, 400 rec/s, SIGKILL one; session timeout {session:.0f} s")
    print(f"  {'baseline: session timeout':<44} {session:>12.2f} s")
    for i, delay in enumerate(delays, 1):
        print(f"  {f'run {i}: kill -> first record of its partitions':<44} {delay:>12.2f} s   "
              f"target <= {session + 5:.0f} s")
        from bench.report import emit

        emit(f"failover run {i}: kill -> first record of its partitions", delay, "s", baseline=session,
             baseline_label="session timeout", goal=f"<= {session + 5:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--session-timeout", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.session_timeout))
