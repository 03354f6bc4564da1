"""A small, unchanged-Faust app for the functional tests: an agent counts keys into a table.

Run as `python -m tests.transport.count_app` with its configuration in the environment:
COUNT_BROKER (redis://...), COUNT_DIR (per-pid processing logs and table dumps), COUNT_APP_ID, and
COUNT_SESSION_TIMEOUT. Each processed record is appended to `<dir>/log.<pid>` as `partition offset key seq`;
a timer writes the table's active partitions to `<dir>/dump.<pid>.json` once recovery is complete.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import faust

PARTITIONS = 4
OUT = Path(os.environ.get("COUNT_DIR", "."))
SESSION = float(os.environ.get("COUNT_SESSION_TIMEOUT", "4"))

app = faust.App(
    os.environ.get("COUNT_APP_ID", "count"),
    broker=os.environ.get("COUNT_BROKER", "redis://127.0.0.1:6379/0"),
    store="memory://",
    web_enabled=False,
    topic_partitions=PARTITIONS,
    table_standby_replicas=1,
    broker_session_timeout=SESSION,
    broker_heartbeat_interval=SESSION / 8,
    broker_rebalance_timeout=SESSION * 2,
    broker_commit_interval=0.5,
    consumer_auto_offset_reset="earliest",
)
events = app.topic("events", partitions=PARTITIONS, key_serializer="raw", value_serializer="raw")
counts = app.Table("counts", default=int, partitions=PARTITIONS)
_log = open(OUT / f"log.{os.getpid()}", "a", buffering=1)  # noqa: SIM115 - lives as long as the worker


@app.agent(events)
async def count(stream: Any) -> None:
    async for event in stream.events():
        key = event.key.decode()
        counts[key] += 1
        _log.write(f"{event.message.partition} {event.message.offset} {key} {event.value.decode()}\n")


@app.timer(0.5)
async def dump() -> None:
    if app.rebalancing or not app.tables.recovery.completed.is_set():
        return
    changelog = counts.changelog_topic.get_topic_name()
    actives = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog)
    data = {k: v for k, v in counts.data.items() if app.producer.key_partition(changelog, k.encode()).partition
            in actives}
    generation = app.consumer_generation_id
    tmp = OUT / f"dump.{os.getpid()}.tmp"
    lean = getattr(app.consumer, "lean_recovery", None)  # the driver's bulk recovery path, when it is on
    delivery = getattr(app.consumer, "lean_delivery", None)  # and its synchronous delivery to stream queues
    tmp.write_text(json.dumps({"generation": generation, "actives": actives, "counts": data,
                               "lean_applied": lean.records_applied if lean is not None else 0,
                               "lean_delivered": delivery.delivered if delivery is not None else 0}))
    tmp.replace(OUT / f"dump.{os.getpid()}.json")


if __name__ == "__main__":
    worker = faust.Worker(app, loglevel=os.environ.get("COUNT_LOGLEVEL", "WARNING"))
    sys.exit(worker.execute_from_commandline())
