"""Builders for scoring tests: a plausible validator record and cluster context with overridable fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from stream_app.records import ClusterContext, ValidatorRecord

SLOTS = 432_000
EPOCH = 100
REFERENCE = 6_800_000  # reference credits of a finished epoch


def credits_history(earned: list[int], last_epoch: int, start: int = 1_000_000) -> tuple[tuple[int, int, int], ...]:
    """epochCredits entries for consecutive epochs ending at `last_epoch` with the given earned credits."""
    entries = []
    total = start
    first = last_epoch - len(earned) + 1
    for offset, amount in enumerate(earned):
        entries.append((first + offset, total + amount, total))
        total += amount
    return tuple(entries)


def make_record(**overrides: Any) -> ValidatorRecord:
    epoch = overrides.get("epoch", EPOCH)
    base = ValidatorRecord(
        run_id=f"run-{epoch}",
        vote_pubkey="Vote111",
        identity_pubkey="Node111",
        epoch=epoch,
        slot=epoch * SLOTS + SLOTS // 2,
        observed_at=1_000_000.0 + epoch * 172_800,
        commission=5,
        activated_stake=1_000 * 10**9,
        epoch_credits=credits_history([REFERENCE] * 4 + [REFERENCE // 2], epoch),
        last_vote=epoch * SLOTS + SLOTS // 2,
        root_slot=epoch * SLOTS + SLOTS // 2 - 32,
        delinquent=False,
    )
    return replace(base, **overrides)


def make_context(**overrides: Any) -> ClusterContext:
    epoch = overrides.get("epoch", EPOCH)
    references = {str(e): REFERENCE for e in range(epoch - 4, epoch)}
    references[str(epoch)] = REFERENCE // 2
    base = ClusterContext(
        run_id=f"run-{epoch}",
        epoch=epoch,
        slot=epoch * SLOTS + SLOTS // 2,
        slot_index=SLOTS // 2,
        slots_in_epoch=SLOTS,
        total_active_stake=400_000_000 * 10**9,
        validator_count=1_300,
        superminority_min_stake=10_000_000 * 10**9,
        reference_credits=references,
    )
    return replace(base, **overrides)


@pytest.fixture
def record() -> Callable[..., ValidatorRecord]:
    return make_record


@pytest.fixture
def context() -> Callable[..., ClusterContext]:
    return make_context
