"""Poison scores: a batch PostgreSQL refuses for what it contains, not for being unreachable.

`persist_scores` retries a failed write until it succeeds, which is right while PostgreSQL is down or
restarting. A batch refused for its data (a constraint, a trigger, a value no check in sinks/rows.py
foresaw) would be retried forever and stall its partition. After POISON_TRIES such refusals in a row the
batch is split in halves, each written (and, if refused again, split) the same way, until the poison is
alone; that one score goes to the `dead-letters` topic (key = vote pubkey, value = the score event as it
was, so it can be replayed once fixed), is counted in `solstake_dead_letters_total{topic}`, logged, and
recorded as a failure of its run so the run still completes with exact counts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import asyncpg

from stream_app import metrics
from stream_app.records import ScoreEvent
from stream_app.scoring_step import failed_event
from stream_app.sinks.postgres import PersistResult

log = logging.getLogger(__name__)

POISON_TRIES = 3
# SQLSTATE classes that mean "this data is refused": data exception, integrity constraint violation (check,
# unique, foreign key, not null), program limit exceeded (a row too large), PL/pgSQL RAISE. Anything else
# (connection loss, a database not accepting connections, shutdown, deadlock, a statement timeout) is
# waited out as before: an outage must never dead-letter good scores.
REFUSAL_CLASSES = ("22", "23", "54", "P0")

DEAD_LETTERS = metrics.DEAD_LETTERS  # defined with the worker's other metrics

Persist = Callable[[list[ScoreEvent]], Awaitable[PersistResult]]
DeadLetter = Callable[[ScoreEvent], Awaitable[None]]


def is_refusal(exc: BaseException) -> bool:
    """True when PostgreSQL answered and refused the data (retrying the same batch cannot help)."""
    if not isinstance(exc, asyncpg.PostgresError):
        return False
    return str(getattr(exc, "sqlstate", "") or "").startswith(REFUSAL_CLASSES)


def merge(first: PersistResult, second: PersistResult) -> PersistResult:
    """One result for two consecutive writes (the second's run counters are the newer ones)."""
    out = PersistResult(epochs={**first.epochs, **second.epochs},
                        commission_events=first.commission_events + second.commission_events,
                        stored=first.stored + second.stored, failed=first.failed + second.failed,
                        rejected=first.rejected + second.rejected)
    for part in (first, second):
        for run_id, votes in part.scored.items():
            out.scored.setdefault(run_id, []).extend(votes)
    runs = {p.run_id: p for p in first.runs}
    for p in second.runs:
        earlier = runs.get(p.run_id)
        runs[p.run_id] = p if earlier is None else replace(p, previous_status=earlier.previous_status)
    out.runs = list(runs.values())
    return out


async def isolate(persist: Persist, dead_letter: DeadLetter, events: Sequence[ScoreEvent],
                  exc: BaseException, topic: str = "trust-scores") -> PersistResult:
    """Write `events` whose batch PostgreSQL refused POISON_TRIES times: halves, down to the poison."""
    if len(events) > 1:
        middle = len(events) // 2
        first = await persist(list(events[:middle]))
        return merge(first, await persist(list(events[middle:])))
    [event] = events
    reason = f"PostgreSQL refused this score {POISON_TRIES} times: {type(exc).__name__}: {exc}"
    log.error("dead-lettered score of validator %s in run %s: %s", event.vote_pubkey, event.run_id, reason,
              extra={"phase": "persist", "run_id": event.run_id, "validator": event.vote_pubkey})
    await dead_letter(event)
    DEAD_LETTERS.labels(topic).inc()
    if event.failed:  # even its failure row is refused: the dead letter is all that is left of it
        return PersistResult()
    return await persist([failed_event(event.run_id, event.vote_pubkey, reason,
                                       identity_pubkey=event.identity_pubkey, epoch=event.epoch)])
