"""The Faust app the transport benchmarks run as worker processes (`python -m bench.transport_app`).

BENCH_MODE: `trivial` (agent only), `table` (one table update per record), `recovery` (table, trivial agent),
`failover` (agent logs `partition time` per record). Results go to BENCH_DIR as one JSON file per pid.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import faust

if os.environ.get("BENCH_LOOP", "uvloop") == "uvloop":
    import uvloop

    uvloop.install()  # the recommended production loop; BENCH_LOOP=asyncio for the stock one

MODE = os.environ.get("BENCH_MODE", "trivial")
TARGET = int(os.environ.get("BENCH_TARGET", "0"))
OUT = Path(os.environ.get("BENCH_DIR", "."))
SESSION = float(os.environ.get("BENCH_SESSION_TIMEOUT", "10"))

app = faust.App(
    os.environ.get("BENCH_APP_ID", "bench"),
    broker=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/0?prefix=bench"),
    store="memory://",
    web_enabled=False,
    topic_partitions=4,
    broker_session_timeout=SESSION,
    broker_heartbeat_interval=SESSION / 10,
    broker_rebalance_timeout=SESSION * 2,
    broker_commit_interval=1.0,
    consumer_auto_offset_reset="earliest",
)
events = app.topic("events", partitions=4, key_serializer="raw", value_serializer="raw")
counts = app.Table("counts", default=int, partitions=4) if MODE in ("table", "recovery") else None
_state: dict[str, Any] = {"seen": 0, "first": 0.0}


class _RecoveryCPU(logging.Handler):
    """Notes the worker's CPU time at Faust's "Restoring state" and "Done reading" log lines (recovery mode)."""

    marks = {"Restoring state from changelog topics": "cpu_start", "Done reading from changelog topics": "cpu_end"}

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        for line, name in self.marks.items():
            if line in text:
                _state[name] = time.process_time()
                if name == "cpu_end":
                    result = {"cpu_seconds": _state["cpu_end"] - _state.get("cpu_start", 0.0)}
                    (OUT / f"recovery-cpu.{os.getpid()}.json").write_text(json.dumps(result))


if MODE == "recovery":  # on Recovery's own logger: the worker's logging setup replaces the root handlers
    logging.getLogger("faust.tables.recovery").addHandler(_RecoveryCPU(logging.INFO))
_log = open(OUT / f"times.{os.getpid()}", "a", buffering=1) if MODE == "failover" else None  # noqa: SIM115


def _record_done() -> None:
    now = time.monotonic()
    result = {"seen": _state["seen"], "seconds": now - _state["first"], "mode": MODE, "marks": _state.get("marks"),
              "cpu_seconds": time.process_time() - _state["cpu"]}
    (OUT / f"result.{os.getpid()}.json").write_text(json.dumps(result))


@app.agent(events)
async def consume(stream: Any) -> None:
    async for event in stream.events():
        if not _state["seen"]:
            _state["first"] = time.monotonic()
            _state["cpu"] = time.process_time()
        _state["seen"] += 1
        if counts is not None and MODE == "table":
            counts[event.key] += 1
        if _log is not None:
            _log.write(f"{event.message.partition} {time.time():.3f}\n")
        if _state["seen"] % 2000 == 0:
            _state.setdefault("marks", []).append(round(time.monotonic() - _state["first"], 3))
        if TARGET and _state["seen"] == TARGET:
            _record_done()


if __name__ == "__main__":
    sys.exit(faust.Worker(app, loglevel=os.environ.get("BENCH_LOGLEVEL", "INFO")).execute_from_commandline())
