"""`python -m stream_app.fetch_once`: one fetch cycle in a short-lived process (spawned by the leader worker).

The cluster snapshot of a large cluster is the worker's biggest allocation by far (~530 MB at 100,000 vote
accounts, RPC JSON and parsed records), and CPython rarely hands freed arenas back, so a worker that fetched
once kept that peak for life. Here the snapshot, the run row, the context and the records produced on
validator-records all live in a process that exits when the cycle is done; the worker only waits for it
(`stream_app.fetch_process.ProcessFetcher`).

The cycle is the ordinary `Fetcher.cycle` (failed-run bookkeeping included) with the ordinary producer
(`Pipeline.produce`). What the worker needs afterwards comes back through files it names:
  --state   the fetcher's `SourceState` (pickled), read before the cycle and written back after it
  --report  the `CycleOutcome` and this process's counter increments (orjson), written right after the cycle
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import orjson

from stream_app.settings import load_or_exit

# Counters the cycle increments in this process; the worker adds them to its own (they are on its /metrics).
REPORTED_COUNTERS = ("RPC_ERRORS", "SCORING_RUNS", "RECORDS_PRODUCED")


def counter_values() -> dict[str, list[tuple[dict[str, str], float]]]:
    """{metric attribute: [(labels, value)]} of the reported counters, `_total` samples only."""
    from stream_app import metrics

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name in REPORTED_COUNTERS:
        samples = [(dict(s.labels), s.value) for family in getattr(metrics, name).collect()
                   for s in family.samples if s.name.endswith("_total") and s.value]
        out[name] = samples
    return out


def read_state(path: str, default: Any) -> Any:
    """The SourceState pickled by our own worker (a file it created for this child), else `default`."""
    file = Path(path)
    return pickle.loads(file.read_bytes()) if file.exists() else default


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def run(args: argparse.Namespace) -> None:
    settings = load_or_exit()
    from stream_app.agents import Pipeline
    from stream_app.app import create_stream_app
    from stream_app.fetcher import Fetcher
    from stream_app.logs import configure_logging

    configure_logging(settings)
    if not settings.database_url or not settings.redis_url:
        sys.exit("fetch_once needs DATABASE_URL and REDIS_URL (the worker passes its own)")
    stream = create_stream_app(settings, settings.redis_url)
    pipeline = Pipeline(settings, settings.database_url, settings.redis_url, stream)
    await stream.app.producer.start()
    try:
        res = await pipeline.resources()
        fetcher = Fetcher(settings, res.pool, res.redis, pipeline.produce, rpc_urls=args.rpc_url or None)
        if args.state:
            fetcher.source_state = read_state(args.state, fetcher.source_state)
        outcome = await fetcher.cycle(args.trigger, run_id=args.run_id, actor=args.actor)
        write_atomically(Path(args.report), orjson.dumps({"outcome": dataclasses.asdict(outcome),
                                                          "counters": counter_values()}))
        if args.state:
            write_atomically(Path(args.state), pickle.dumps(fetcher.source_state))
    finally:
        await stream.app.producer.stop()
        close: Any = getattr(stream.app.transport, "close_clients", None)
        if close is not None:
            await close()
        await pipeline.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trigger", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--actor")
    parser.add_argument("--rpc-url", action="append", default=[])
    parser.add_argument("--state")
    parser.add_argument("--report", required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio's loop works too
        pass
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
