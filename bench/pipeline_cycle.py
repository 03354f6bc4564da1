"""Pipeline cycle benchmark: fetch end -> last score committed, records/s and worker peak memory.

    .venv/bin/python -m bench.pipeline_cycle            # 2,000-validator latency (20 runs; 1, then 2 workers)
                                                        # + a 100,000-validator cycle
    .venv/bin/python -m bench.pipeline_cycle --quick    # 5 runs + a 20,000-validator cycle
    .venv/bin/python -m bench.pipeline_cycle --part latency --workers 2   # two workers only (default: 1, then 2)

Real parts only: the RPC simulator (HTTP, in this process), `python -m stream_app.worker` processes, PostgreSQL and
Redis (DATABASE_URL / REDIS_URL, or embedded servers under .solstake/bench). Each figure is printed beside
the raw floor measured in the same run: the same records XADDed (pipelined), XREAD back and COPYed into
PostgreSQL by one plain asyncio client, without Faust, scoring or the sink's merges.

Goals (issue 6): latency p50 <= 1 s, p99 <= 2 s at 2,000 validators; worker peak RSS <= 400 MB at 100,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import redis.asyncio as aioredis

from bench.report import emit
from migrations import migrate
from stream_app.fetcher import request_fetch
from stream_app.records import ValidatorRecord
from stream_app.sources.rpc import RpcClient
from stream_app.sources.simulator.server import SimulatorHandle, start_simulator
from stream_app.sources.snapshot import fetch_cluster_snapshot

ROOT = Path(__file__).resolve().parent.parent


def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# BENCH_PROFILE=<dir>: the worker runs under a CPU-time cProfile, dumped to <dir>/<name>.prof when it stops.
PROFILED = """\
import cProfile, runpy, time
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(runpy.run_module, "stream_app.worker", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profile.dump_stats({dump!r})
"""


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("wb")
        command = [sys.executable, "-m", "stream_app.worker"]
        if os.environ.get("BENCH_PROFILE"):
            command[1:] = ["-c", PROFILED.format(dump=str(Path(os.environ["BENCH_PROFILE"]) / f"{log.stem}.prof"))]
        self.proc = subprocess.Popen(command, env=env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def cpu_seconds(self) -> float:
        """user + system CPU of the worker so far: unlike wall time, barely moved by a busy machine."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Bench:
    def __init__(self, database_url: str, redis_url: str, out: Path) -> None:
        self.admin_url = database_url
        self.redis_url = redis_url
        self.out = out

    async def fresh_database(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        url = _with_db(self.admin_url, name)
        await migrate(url)
        return url

    async def drop_database(self, url: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
        finally:
            await conn.close()

    def worker(self, database_url: str, prefix: str, sim: SimulatorHandle, name: str) -> Worker:
        env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=self.redis_url, REDIS_PREFIX=prefix,
                   SOLANA_RPC_URL=sim.url, FETCH_INTERVAL="86400", SIMULATOR_FALLBACK="false",
                   RPC_TIMEOUT="300", RUN_TIMEOUT="3600", LOG_LEVEL="warning", PYTHONUNBUFFERED="1",
                   WORKER_METRICS_PORT=str(_free_port()))
        return Worker(env, self.out / f"{name}.log")

    async def wait_completed(self, pool: asyncpg.Pool, run_id: str | None, seconds: float) -> asyncpg.Record:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if run_id is None:
                row = await pool.fetchrow("SELECT * FROM scoring_runs ORDER BY run_date LIMIT 1")
            else:
                row = await pool.fetchrow("SELECT * FROM scoring_runs WHERE id = $1", run_id)
            if row is not None and row["status"] != "running":
                if row["status"] != "completed":
                    raise RuntimeError(f"run {row['id']} ended {row['status']}: {row['error']}")
                return row
            await asyncio.sleep(0.05)
        raise TimeoutError(f"run {run_id or '(first)'} not completed within {seconds:g} s (see {self.out})")

    async def raw_floor(self, records: list[ValidatorRecord], database_url: str) -> float:
        """XADD (pipelined, 500 per round trip) + XREAD + COPY of the same records; seconds."""
        redis = aioredis.from_url(self.redis_url)
        key = f"benchraw:{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("CREATE TEMP TABLE raw (vote_account text, doc text)")
            payloads = [orjson.dumps({"kind": "record", "record": r}) for r in records]
            started = time.perf_counter()
            for i in range(0, len(payloads), 500):
                pipe = redis.pipeline(transaction=False)
                for p in payloads[i:i + 500]:
                    pipe.xadd(key, {"v": p})
                await pipe.execute()
            rows: list[tuple[str, str]] = []
            last = "0-0"
            while len(rows) < len(payloads):
                reply: Any = await redis.xread({key: last}, count=5000)
                for _stream, entries in reply:
                    for entry_id, fields in entries:
                        last = entry_id
                        doc = fields[b"v"]
                        rows.append((orjson.loads(doc)["record"]["vote_pubkey"], doc.decode()))
            await conn.copy_records_to_table("raw", records=rows, columns=("vote_account", "doc"))
            return time.perf_counter() - started
        finally:
            await redis.delete(key)
            await redis.aclose()
            await conn.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def snapshot_records(sim: SimulatorHandle) -> list[ValidatorRecord]:
    async with RpcClient([sim.url], timeout=300) as rpc:
        return (await fetch_cluster_snapshot(rpc)).records


async def latency(bench: Bench, validators: int, runs: int, workers: int = 1) -> None:
    sim = await start_simulator(0, validators=validators, epoch_seconds=0)
    database_url = await bench.fresh_database()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    # More than one worker: the partitions are shared out, each worker scores its own (the CPU below is summed).
    started = [bench.worker(database_url, prefix, sim, "latency-worker" + (f"-{i}" if i else ""))
               for i in range(workers)]
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    redis = aioredis.from_url(bench.redis_url)
    try:
        await bench.wait_completed(pool, None, 300)  # the startup run warms everything up; not counted
        if workers > 1:  # one more, once every worker has joined and has its partitions (not counted)
            await bench.wait_completed(pool, await request_fetch(redis, prefix, trigger="cli", actor="bench"), 300)
        measured, cpu = [], []
        for _ in range(runs):
            cpu_before = sum(w.cpu_seconds() for w in started)
            run_id = await request_fetch(redis, prefix, trigger="cli", actor="bench")
            row = await bench.wait_completed(pool, run_id, 120)
            cpu.append(sum(w.cpu_seconds() for w in started) - cpu_before)
            measured.append((row["completed_at"] - row["fetched_at"]).total_seconds())
        records = await snapshot_records(sim)
        floors, floor_cpu = [], []
        for _ in range(runs):
            cpu_before = time.process_time()
            floors.append(await bench.raw_floor(records, database_url))
            floor_cpu.append(time.process_time() - cpu_before)
        who = f"{workers} workers" if workers > 1 else "1 worker"
        print(f"\nfetch end -> last score committed, {validators} validators, {runs} runs, {who}")
        print(f"  {'':28} {'p50':>8} {'p99':>8} {'max':>8}")
        print(f"  {'pipeline (Faust, scoring)':28} {_pct(measured, .5):8.3f} {_pct(measured, .99):8.3f} "
              f"{max(measured):8.3f}  s   goal p50 <= 1, p99 <= 2")
        print(f"  {'raw XADD+XREAD+COPY floor':28} {_pct(floors, .5):8.3f} {_pct(floors, .99):8.3f} "
              f"{max(floors):8.3f}  s")
        print(f"  ratio p50 pipeline / floor: {_pct(measured, .5) / _pct(floors, .5):.1f}x")
        whose = "workers (sum)" if workers > 1 else "worker"
        print(f"  client CPU per run, p50: {whose} {statistics.median(cpu):.2f} s (score + persist; the fetch and "
              f"produce run in a child) = {1000 * statistics.median(cpu) / validators:.3f} ms per record, vs floor "
              f"{statistics.median(floor_cpu):.2f} s; load average {os.getloadavg()[0]:.1f}")
        label = f"{validators} validators" + (f", {workers} workers" if workers > 1 else "")
        emit(f"{label}: fetch end -> committed p50", _pct(measured, .5), "s",
             baseline=_pct(floors, .5), baseline_label="raw XADD+XREAD+COPY", goal="<= 1")
        emit(f"{label}: fetch end -> committed p99", _pct(measured, .99), "s",
             baseline=_pct(floors, .99), baseline_label="raw XADD+XREAD+COPY", goal="<= 2")
        emit(f"{label}: worker CPU per record", 1000 * statistics.median(cpu) / validators, "ms",
             baseline=1000 * statistics.median(floor_cpu) / validators, baseline_label="raw floor client CPU")
    finally:
        for worker in started:
            worker.stop()
        await pool.close()
        await redis.delete(*[k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)] or ["-"])
        await redis.aclose()
        await bench.drop_database(database_url)
        await sim.close()


async def throughput(bench: Bench, validators: int) -> None:
    started = time.perf_counter()
    sim = await start_simulator(0, validators=validators, epoch_seconds=0)
    print(f"\n(simulator of {validators} validators built in {time.perf_counter() - started:.1f} s)")
    database_url = await bench.fresh_database()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    worker = bench.worker(database_url, prefix, sim, "throughput-worker")
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    redis = aioredis.from_url(bench.redis_url)
    try:
        row = await bench.wait_completed(pool, None, 3600)
        peak, cpu = worker.peak_rss_mb(), worker.cpu_seconds()
        fetch_s = (row["fetched_at"] - row["run_date"]).total_seconds()
        pipeline_s = (row["completed_at"] - row["fetched_at"]).total_seconds()
        records = await snapshot_records(sim)
        floor_s = await bench.raw_floor(records, database_url)
        print(f"{validators}-validator cycle, 1 worker (fetch itself: {fetch_s:.1f} s, not counted below)")
        print(f"  pipeline (Faust, scoring, sink)  {validators / pipeline_s:10.0f} records/s  ({pipeline_s:.1f} s)")
        print(f"  raw XADD+XREAD+COPY floor        {validators / floor_s:10.0f} records/s  ({floor_s:.1f} s)")
        print(f"  worker peak RSS (VmHWM; fetch in a child process) {peak:.0f} MB   goal <= 400 MB")
        print(f"  worker CPU for the whole cycle (start-up included; the fetch child not) {cpu:.1f} s; "
              f"load average {os.getloadavg()[0]:.1f}")
        emit(f"{validators} validators: records/s, 1 worker", validators / pipeline_s, "rec/s",
             baseline=validators / floor_s, baseline_label="raw XADD+XREAD+COPY")
        emit(f"{validators} validators: worker peak RSS", peak, "MB", goal="<= 400")
    finally:
        worker.stop()
        await pool.close()
        await redis.delete(*[k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)] or ["-"])
        await redis.aclose()
        await bench.drop_database(database_url)
        await sim.close()


async def main(args: argparse.Namespace) -> None:
    from stream_app.embedded import EmbeddedServices

    out = ROOT / "bench" / "out" / "pipeline"
    out.mkdir(parents=True, exist_ok=True)
    embedded = EmbeddedServices(ROOT / ".solstake" / "bench")
    database_url = os.environ.get("DATABASE_URL") or embedded.start_postgres()
    redis_url = os.environ.get("REDIS_URL") or embedded.start_redis()
    bench = Bench(database_url, redis_url, out)
    try:
        if args.part in ("latency", "all"):
            for workers in args.workers:
                await latency(bench, args.validators, 5 if args.quick else args.runs, workers)
        if args.part in ("throughput", "all"):
            await throughput(bench, 20_000 if args.quick else args.big)
    finally:
        embedded.stop()


def _counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(","))
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts are positive integers, e.g. 1,2")
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 latency runs and a 20,000-validator cycle")
    parser.add_argument("--part", choices=("latency", "throughput", "all"), default="all")
    parser.add_argument("--validators", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--workers", type=_counts, default=(1, 2),
                        help="worker processes for the latency part, comma-separated: one latency part each (1,2)")
    asyncio.run(main(parser.parse_args()))
