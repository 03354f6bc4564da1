"""Scale run: a simulated cluster through the whole pipeline with 1 worker, then with 2 workers.

    .venv/bin/python -m bench.pipeline_scale            # 100,000 validators
    .venv/bin/python -m bench.pipeline_scale --quick    # 20,000 validators

Real parts only (the RPC simulator over HTTP in this process, `python -m stream_app.worker` processes,
PostgreSQL, Redis). For each worker count: a warm-up run (the leader's first timer run, during which the
group settles), then one measured run asked for with `request_fetch`. Figures per worker count:
records/s from fetch end to the last score committed, end-to-end latency of the run (request to completed,
the RPC fetch included), peak RSS (VmHWM) of every worker and of this process (the simulator). Baseline in
the same run: the same records XADDed, XREAD and COPYed by one plain client (bench.pipeline_cycle's floor).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
import uuid

import asyncpg
import redis.asyncio as aioredis

from bench.pipeline_cycle import ROOT, Bench, Worker, snapshot_records
from bench.report import emit
from stream_app.fetcher import request_fetch
from stream_app.sources.simulator.server import SimulatorHandle, start_simulator

GOAL_RSS = "<= 400"  # MB per worker at 100,000 validators (issue 6)


async def one(bench: Bench, sim: SimulatorHandle, validators: int, workers: int, floor_s: float) -> float:
    database_url = await bench.fresh_database()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    procs: list[Worker] = [bench.worker(database_url, prefix, sim, f"scale-{workers}w-{i}") for i in range(workers)]
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    redis = aioredis.from_url(bench.redis_url)
    try:
        warm = await bench.wait_completed(pool, None, 3600)  # warm-up: first timer run, group settling
        warm_s = (warm["completed_at"] - warm["fetched_at"]).total_seconds()
        cpu_before = [w.cpu_seconds() for w in procs]
        asked = time.time()
        run_id = await request_fetch(redis, prefix, trigger="cli", actor="bench")
        row = await bench.wait_completed(pool, run_id, 3600)
        pipeline_s = (row["completed_at"] - row["fetched_at"]).total_seconds()
        end_to_end = row["completed_at"].timestamp() - asked
        rate = validators / pipeline_s
        peaks = [w.peak_rss_mb() for w in procs]
        cpu = [w.cpu_seconds() - b for w, b in zip(procs, cpu_before, strict=True)]
        print(f"\n{validators} validators, {workers} worker(s):")
        print(f"  records/s fetch end -> committed {rate:10.0f}  ({pipeline_s:.1f} s; floor {floor_s:.1f} s)")
        print(f"  end-to-end (request -> completed, fetch included) {end_to_end:.1f} s")
        print(f"  (warm-up run, first observation of every validator: {validators / warm_s:.0f} records/s, "
              f"{warm_s:.1f} s)")
        print(f"  worker peak RSS MB {', '.join(f'{p:.0f}' for p in peaks)}; "
              f"worker CPU s {', '.join(f'{c:.1f}' for c in cpu)}")
        emit(f"{validators // 1000}k validators, {workers} worker(s): records/s", rate, "rec/s",
             baseline=validators / floor_s, baseline_label="raw XADD+XREAD+COPY")
        emit(f"{validators // 1000}k validators, {workers} worker(s): end-to-end run latency", end_to_end, "s")
        for i, peak in enumerate(peaks):
            emit(f"{validators // 1000}k validators, {workers} worker(s): worker {i} peak RSS", peak, "MB",
                 goal=GOAL_RSS)
        return rate
    finally:
        for w in procs:
            w.stop()
        await pool.close()
        await redis.delete(*[k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)] or ["-"])
        await redis.aclose()
        await bench.drop_database(database_url)


async def main(args: argparse.Namespace) -> None:
    from stream_app.embedded import EmbeddedServices

    validators = 20_000 if args.quick else args.validators
    out = ROOT / "bench" / "out" / "pipeline"
    out.mkdir(parents=True, exist_ok=True)
    embedded = EmbeddedServices(ROOT / ".solstake" / "bench")
    database_url = os.environ.get("DATABASE_URL") or embedded.start_postgres()
    redis_url = os.environ.get("REDIS_URL") or embedded.start_redis()
    bench = Bench(database_url, redis_url, out)
    started = time.perf_counter()
    sim = await start_simulator(0, validators=validators, epoch_seconds=0)
    print(f"simulator of {validators} validators built in {time.perf_counter() - started:.1f} s")
    try:
        records = await snapshot_records(sim)
        scratch = await bench.fresh_database()
        try:
            floor_s = await bench.raw_floor(records, scratch)
        finally:
            await bench.drop_database(scratch)
        del records
        rates = {n: await one(bench, sim, validators, n, floor_s) for n in (1, 2)}
        sim_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\n2 workers / 1 worker records/s: {rates[2] / rates[1]:.2f}x  (2 cores shared with everything else; "
              f"load average {os.getloadavg()[0]:.1f})")
        print(f"this process (simulator + floor client) peak RSS {sim_peak:.0f} MB")
        emit(f"{validators // 1000}k validators: records/s 2 workers vs 1", rates[2], "rec/s", baseline=rates[1],
             baseline_label="1 worker")
        emit(f"{validators // 1000}k validators: simulator process peak RSS", sim_peak, "MB")
    finally:
        await sim.close()
        embedded.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 validators instead of 100,000")
    parser.add_argument("--validators", type=int, default=100_000)
    asyncio.run(main(parser.parse_args()))
