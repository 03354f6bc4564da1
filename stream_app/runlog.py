"""Progress log lines of a scoring run, with the context the seed's logs carry as keys:

    {"msg": "run 3f2c… batch 14/23: 650/1102 records in (59.0%), success rate 94.5%", "run_id": "3f2c…",
     "phase": "persist", "batch": 14, "total_batches": 23, "progress": "650/1102", "success_rate": "94.5%"}

`batch` counts the batches this worker wrote for the run; `total_batches` is the estimate at the current
batch size (exact once the run is complete). In production these are JSON keys (stream_app.logs).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream_app.sinks.postgres import PersistResult

log = logging.getLogger("stream_app.progress")

FINAL = ("completed", "partial", "failed")
_KEEP_RUNS = 64  # runs whose batch counters we remember


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


class BatchProgress:
    def __init__(self) -> None:
        self._batches: OrderedDict[str, int] = OrderedDict()

    def batch_written(self, result: PersistResult) -> None:
        """Log one line per run touched by a persisted batch, and one when a run reaches a final status."""
        for p in result.runs:
            batch = self._batches.pop(p.run_id, 0) + 1
            done = p.success_count + p.fail_count
            remaining = max(0, p.validator_count - done)
            in_batch = max(1, len(result.scored.get(p.run_id, ())))
            total = batch + math.ceil(remaining / in_batch)
            context = {
                "run_id": p.run_id, "phase": "persist", "batch": batch, "total_batches": total,
                "progress": f"{done}/{p.validator_count}", "success_rate": percent(p.success_count, done),
            }
            log.info("run %s batch %d/%d: %d/%d records in (%s), success rate %s", p.run_id, batch, total, done,
                     p.validator_count, percent(done, p.validator_count), context["success_rate"], extra=context)
            if p.changed and p.status in FINAL:
                log.info("run %s %s: %d scored, %d failed of %d", p.run_id, p.status, p.success_count,
                         p.fail_count, p.validator_count, extra={**context, "phase": "complete", "status": p.status})
                continue
            self._batches[p.run_id] = batch
            while len(self._batches) > _KEEP_RUNS:
                self._batches.popitem(last=False)


PROGRESS = BatchProgress()


def batch_written(result: PersistResult) -> None:
    PROGRESS.batch_written(result)
