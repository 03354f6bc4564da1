"""Per-validator scoring state: small, bounded, and a plain dict on the wire (Faust table + changelog).

Everything here is bounded: the per-epoch commission log keeps a fixed window of epochs and the rug
list keeps a fixed horizon, so the state stays a few hundred bytes whatever the validator's age.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from typing import Any

from stream_app.records import RecordError

# Per-epoch commission aggregate: [first, last, min, max, applied]; applied is None until known.
CommissionEpoch = list[int | None]
FIRST, LAST, MIN, MAX, APPLIED = range(5)


@dataclass(slots=True)
class ValidatorState:
    # Idempotence: the newest observation folded in, ordered by (slot, observed_at).
    last_slot: int = -1
    last_observed_at: float = 0.0
    last_run_id: str = ""
    # Vote performance: EWMA of per-epoch sub-scores over finished epochs only.
    vote_epoch: int = -1  # last finished epoch folded in
    vote_ewma: float = 0.0
    vote_n: int = 0  # finished epochs folded in
    vote_last_ratio: float | None = None  # credits / reference of the last finished epoch
    credited_epochs: int = 0  # finished epochs with credits > 0 (validator age)
    # Availability: time-decayed sums of "not delinquent" and of observed weight.
    avail_up: float = 0.0
    avail_seen: float = 0.0
    delinquent_since: int | None = None
    # Block production: decayed sums over finished epochs, plus the current epoch so far.
    block_epoch: int = -1
    epoch_leader_slots: int = 0
    epoch_skipped: int = 0
    leader_sum: float = 0.0
    skipped_sum: float = 0.0
    block_known: bool = False
    # Commission.
    commission: int | None = None  # last polled
    commission_epochs: dict[int, CommissionEpoch] = field(default_factory=dict)
    rugs: list[list[int]] = field(default_factory=list)  # [epoch, increase_pp]
    repeat_offender_since: int | None = None

    def copy(self) -> ValidatorState:
        clone = ValidatorState(*_values(self))
        clone.commission_epochs = {e: list(v) for e, v in self.commission_epochs.items()}
        clone.rugs = [list(r) for r in self.rugs]
        return clone

    def to_dict(self) -> dict[str, Any]:
        data = dict(zip(FIELD_NAMES, _values(self), strict=True))
        data["commission_epochs"] = {str(e): list(v) for e, v in self.commission_epochs.items()}
        data["rugs"] = [list(r) for r in self.rugs]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ValidatorState:
        if not isinstance(data, dict):
            raise RecordError(f"ValidatorState: expected an object, got {type(data).__name__}")
        unknown = data.keys() - FIELD_SET
        if unknown:
            raise RecordError(f"ValidatorState: unknown fields {sorted(unknown)}")
        try:
            state = cls(**data)
            state.commission_epochs = {
                int(e): _commission_epoch(v) for e, v in dict(data.get("commission_epochs", {})).items()
            }
            state.rugs = [[int(e), int(d)] for e, d in data.get("rugs", [])]
        except (TypeError, ValueError) as exc:
            raise RecordError(f"ValidatorState: {exc}") from None
        _check_types(state)
        return state


FIELD_NAMES = tuple(f.name for f in fields(ValidatorState))
FIELD_SET = frozenset(FIELD_NAMES)
_values = operator.attrgetter(*FIELD_NAMES)  # every field, in declaration order, in one C call


_INT_OR_NONE = frozenset((int, type(None)))


def _commission_epoch(value: Any) -> CommissionEpoch:
    if type(value) is list and len(value) == 5:  # what the table holds: five ints or nulls, kept as they are
        a, b, c, d, e = value
        known = _INT_OR_NONE
        if type(a) in known and type(b) in known and type(c) in known and type(d) in known and type(e) in known:
            return [a, b, c, d, e]
    if not isinstance(value, (list, tuple)) or len(value) != 5:
        raise ValueError(f"commission epoch must be [first, last, min, max, applied], got {value!r}")
    return [None if v is None else int(v) for v in value]


_INTEGERS = ("last_slot", "vote_epoch", "vote_n", "credited_epochs", "block_epoch")
_NUMBERS = ("vote_ewma", "avail_up", "avail_seen", "leader_sum", "skipped_sum", "last_observed_at")


def _check_types(state: ValidatorState) -> None:
    s = state
    if (isinstance(s.last_slot, int) and isinstance(s.vote_epoch, int) and isinstance(s.vote_n, int)
            and isinstance(s.credited_epochs, int) and isinstance(s.block_epoch, int)
            and isinstance(s.vote_ewma, (int, float)) and isinstance(s.avail_up, (int, float))
            and isinstance(s.avail_seen, (int, float)) and isinstance(s.leader_sum, (int, float))
            and isinstance(s.skipped_sum, (int, float)) and isinstance(s.last_observed_at, (int, float))):
        return
    for name in _INTEGERS:
        if not isinstance(getattr(state, name), int):
            raise RecordError(f"ValidatorState: {name} must be an integer")
    for name in _NUMBERS:
        if not isinstance(getattr(state, name), int | float):
            raise RecordError(f"ValidatorState: {name} must be a number")


def state_to_dict(state: ValidatorState) -> dict[str, Any]:
    return state.to_dict()


def state_from_dict(data: Any) -> ValidatorState:
    return ValidatorState.from_dict(data)
