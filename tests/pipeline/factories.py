"""Builders of pipeline records for tests (plain values, no I/O)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from stream_app.records import RunHeader, ScoreEvent, ValidatorRecord


def new_run_id() -> str:
    return str(uuid.uuid4())


def vote(i: int) -> str:
    return f"Vote{i:040d}"


def record(run_id: str, i: int, *, epoch: int = 752, commission: int = 5, observed_at: float | None = None,
           delinquent: bool = False, **extra: Any) -> ValidatorRecord:
    values: dict[str, Any] = {
        "run_id": run_id, "vote_pubkey": vote(i), "identity_pubkey": f"Node{i:040d}", "epoch": epoch,
        "slot": epoch * 432_000 + 1000, "observed_at": observed_at if observed_at is not None else time.time(),
        "commission": commission, "activated_stake": 1_000_000_000 * (i + 1),
        "epoch_credits": ((epoch - 1, 6_000_000, 100), (epoch, 6_100_000, 6_000_000)),
        "last_vote": epoch * 432_000 + 990, "root_slot": epoch * 432_000 + 950, "delinquent": delinquent,
        "version": "2.1.14", "name": f"validator {i}", "leader_slots": 40, "blocks_produced": 39,
    }
    values.update(extra)
    return ValidatorRecord(**values)


def score_event(run_id: str, i: int, *, score: float = 80.0, epoch: int = 752, failed: bool = False,
                events: list[dict[str, Any]] | None = None, rec: ValidatorRecord | None = None,
                **rec_extra: Any) -> ScoreEvent:
    rec = rec or record(run_id, i, epoch=epoch, **rec_extra)
    return ScoreEvent(
        run_id=run_id, vote_pubkey=rec.vote_pubkey, identity_pubkey=rec.identity_pubkey, epoch=epoch,
        score=score, confidence=0.9, scoring_version="test-1",
        components=[{"name": "vote_performance", "score": 0.9, "weight": 0.3, "contribution": 27.0}],
        penalties=[], events=events or [], uptime=99.5, record=rec.to_dict(), failed=failed,
        error="boom" if failed else None,
    )


def header(run_id: str, count: int, *, epoch: int = 752, trigger: str = "timer",
           started_at: float | None = None) -> RunHeader:
    return RunHeader(run_id=run_id, epoch=epoch, slot=epoch * 432_000 + 1000, expected_count=count,
                     started_at=started_at if started_at is not None else time.time(), source="test",
                     trigger=trigger)
