"""Full cluster snapshot from the RPC simulator over HTTP: time and peak memory, beside the floor.

For each cluster size a simulator runs in its own process (frozen clock) and two measurements run, each in
a fresh process so peak RSS is its own:

  floor     the same RPC calls (getEpochInfo, getVoteAccounts, getClusterNodes, getBlockProduction,
            Config getProgramAccounts, getMultipleAccounts and getInflationReward in batches of 100, 8 in
            flight) downloaded raw with aiohttp, then `json.loads` of the same bytes (and orjson.loads, shown
            apart): the cost of merely receiving and decoding the answers
  snapshot  fetch_cluster_snapshot(): the same calls through RpcClient + validating parsers + ValidatorRecords
  steady    the run every timer tick makes once validator-info, withdrawers and the epoch's rewards are
            cached: getEpochInfo + getVoteAccounts + getClusterNodes + getBlockProduction (floor vs snapshot)

Peak memory is the process's peak RSS minus its RSS after imports. Wall times include the simulator's own
work answering (identical for both rows); "client cpu" is the measuring process alone over both its runs
(first + steady; the floor's includes its extra orjson pass, shown separately), the fairest comparison on a
shared machine.

Usage: .venv/bin/python -m bench.source_snapshot [--quick] [--sizes 2000,100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp
import orjson

from bench.report import emit

BATCH = 100
CONFIG_PROGRAM = "Config1111111111111111111111111111111111111"
CONCURRENCY = 8


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _floor(url: str) -> dict[str, Any]:
    """The same calls as a full snapshot, then as a steady-state one, downloaded and json.loads'ed only."""
    ids = iter(range(1, 10**9))
    totals = {"bytes": 0, "json_loads_s": 0.0, "orjson_loads_s": 0.0}

    async def call(http: aiohttp.ClientSession, method: str, params: list[Any]) -> Any:
        body = orjson.dumps({"jsonrpc": "2.0", "id": next(ids), "method": method, "params": params})
        async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
        totals["bytes"] += len(raw)
        t = time.perf_counter()
        orjson.loads(raw)  # for comparison only: subtracted from the floor's time
        totals["orjson_loads_s"] += time.perf_counter() - t
        t = time.perf_counter()
        decoded = json.loads(raw)
        totals["json_loads_s"] += time.perf_counter() - t
        return decoded["result"]

    async def full(http: aiohttp.ClientSession) -> int:
        info = await call(http, "getEpochInfo", [])
        votes, _, _, _ = await asyncio.gather(
            call(http, "getVoteAccounts", []), call(http, "getClusterNodes", []),
            call(http, "getBlockProduction", []),
            call(http, "getProgramAccounts", [CONFIG_PROGRAM, {"encoding": "jsonParsed"}]))
        keys = [e["votePubkey"] for e in votes["current"] + votes["delinquent"]]
        del votes
        limit = asyncio.Semaphore(CONCURRENCY)

        async def limited(method: str, params: list[Any]) -> None:
            async with limit:
                await call(http, method, params)  # decoded, then dropped: as a parser that streams would

        batches = [keys[i:i + BATCH] for i in range(0, len(keys), BATCH)]
        await asyncio.gather(*(limited("getMultipleAccounts", [b, {"encoding": "jsonParsed"}]) for b in batches))
        await asyncio.gather(*(limited("getInflationReward", [b, {"epoch": info["epoch"] - 1}]) for b in batches))
        return len(keys)

    async def steady(http: aiohttp.ClientSession) -> None:
        await call(http, "getEpochInfo", [])
        await asyncio.gather(call(http, "getVoteAccounts", []), call(http, "getClusterNodes", []),
                             call(http, "getBlockProduction", []))

    async with aiohttp.ClientSession() as http:
        start, orjson_before = time.perf_counter(), totals["orjson_loads_s"]
        validators = await full(http)
        full_s = time.perf_counter() - start - (totals["orjson_loads_s"] - orjson_before)
        downloaded, json_s, orjson_s = totals["bytes"], totals["json_loads_s"], totals["orjson_loads_s"]
        start, orjson_before = time.perf_counter(), totals["orjson_loads_s"]
        await steady(http)
        steady_s = time.perf_counter() - start - (totals["orjson_loads_s"] - orjson_before)
    return {"seconds": full_s, "steady_s": steady_s, "bytes": downloaded, "json_loads_s": json_s,
            "orjson_loads_s": orjson_s, "validators": validators}


async def _snapshot(url: str) -> dict[str, Any]:
    """A first snapshot (everything fetched), then a steady-state one with the same state (infos,
    withdrawers and the epoch's rewards cached), as the fetcher's timer does."""
    from stream_app.sources.rpc import RpcClient
    from stream_app.sources.snapshot import SourceState, fetch_cluster_snapshot

    state = SourceState()
    async with RpcClient([url], timeout=300, concurrency=CONCURRENCY) as rpc:
        start = time.perf_counter()
        snap = await fetch_cluster_snapshot(rpc, state=state)
        full_s = time.perf_counter() - start
        requests = rpc.stats.requests
        del snap.records[:]
        start = time.perf_counter()
        again = await fetch_cluster_snapshot(rpc, state=state)
        steady_s = time.perf_counter() - start
    return {"seconds": full_s, "steady_s": steady_s, "validators": len(again.records),
            "failures": len(again.failures), "requests": requests}


def worker(kind: str, url: str) -> None:
    import stream_app.sources.snapshot  # noqa: F401  (imports counted in the baseline RSS, not the peak)

    base = _rss_mb()
    cpu = time.process_time()
    result = asyncio.run(_floor(url) if kind == "floor" else _snapshot(url))
    result["cpu_s"] = time.process_time() - cpu  # this process only: the simulator runs in another one
    result["peak_mb"] = _peak_mb() - base
    print(json.dumps(result))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_worker(kind: str, url: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.source_snapshot", "--worker", kind, "--url", url],
                         check=True, capture_output=True, text=True, timeout=1800)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _start_simulator(size: int) -> tuple[subprocess.Popen[bytes], str, float]:
    port = _free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "stream_app.sources.simulator", "--port", str(port),
                             "--validators", str(size), "--epoch-seconds", "0"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()  # the banner: listening
    return proc, f"http://127.0.0.1:{port}/", time.perf_counter() - start


def bench(size: int, repeat: int) -> None:
    sim, url, startup = _start_simulator(size)
    try:
        rows: dict[str, list[dict[str, Any]]] = {"floor": [], "snapshot": []}
        for i in range(repeat):
            order = ["snapshot", "floor"] if i % 2 == 0 else ["floor", "snapshot"]  # no advantage to either
            for kind in order:
                rows[kind].append(_run_worker(kind, url))
    finally:
        sim.terminate()
        sim.wait(30)
    floor, snap = rows["floor"], rows["snapshot"]
    med = statistics.median
    print(f"\n== {size:,} vote accounts (simulator start {startup:.1f} s; {floor[0]['bytes'] / 2**20:.1f} MiB of "
          f"JSON over {snap[0]['requests']} requests; median of {repeat})")
    print(f"{'first run':28}{'wall s':>10}{'client cpu s':>14}{'peak MiB':>10}")
    print(f"{'floor: download + json.loads':28}{med(r['seconds'] for r in floor):>10.2f}"
          f"{med(r['cpu_s'] for r in floor):>14.2f}{med(r['peak_mb'] for r in floor):>10.1f}")
    print(f"{'  of which json.loads':28}{med(r['json_loads_s'] for r in floor):>10.2f}")
    print(f"{'  (orjson.loads instead)':28}{med(r['orjson_loads_s'] for r in floor):>10.2f}")
    print(f"{'fetch_cluster_snapshot':28}{med(r['seconds'] for r in snap):>10.2f}"
          f"{med(r['cpu_s'] for r in snap):>14.2f}{med(r['peak_mb'] for r in snap):>10.1f}")
    print(f"{'steady-state run (cached info/withdrawers/rewards): floor':58}"
          f"{med(r['steady_s'] for r in floor):>8.2f} s")
    print(f"{'steady-state run: fetch_cluster_snapshot':58}{med(r['steady_s'] for r in snap):>8.2f} s")
    wall = med(r["seconds"] for r in snap) / med(r["seconds"] for r in floor)
    cpu = med(r["cpu_s"] for r in snap) / med(r["cpu_s"] for r in floor)
    print(f"snapshot / floor: wall {wall:.2f}x, client cpu {cpu:.2f}x (floor cpu includes the orjson pass); "
          f"records {snap[0]['validators']:,}, failures {snap[0]['failures']}")
    emit(f"{size:,} vote accounts: first snapshot wall", med(r["seconds"] for r in snap), "s",
         baseline=med(r["seconds"] for r in floor), baseline_label="download + json.loads")
    emit(f"{size:,} vote accounts: steady-state snapshot wall", med(r["steady_s"] for r in snap), "s",
         baseline=med(r["steady_s"] for r in floor), baseline_label="download + json.loads")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2,000 validators only, one repetition")
    parser.add_argument("--sizes", default="2000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", choices=["floor", "snapshot"])
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.url)
        return
    sizes = [2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    for size in sizes:
        bench(size, 1 if args.quick or size > 20_000 else args.repeat)


if __name__ == "__main__":
    main()
