"""The explanation of one score: components, penalties and commission events, as plain dicts for the API.

Dict keys are the public contract (PostgreSQL jsonb and GraphQL):
  component {name, raw, reference, score, weight, contribution, n, known, ...details}
  penalty   {kind, reason, factor, since_epoch, expires_epoch[, cap]}
  event     {vote_pubkey, epoch, kind, old_commission, new_commission, applied_commission}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_app.records import ScoreEvent, ValidatorRecord, record_fields

Raw = float | int | str | None


@dataclass(slots=True)  # not frozen: frozen-dataclass construction cost a quarter of update() time
class Measurement:
    """What a component function returns: the evidence and the sub-score, before weighting."""

    name: str
    raw: Raw
    reference: Raw
    score: float  # sub-score in [0, 1], already smoothed toward the prior
    n: float  # amount of evidence (epochs, or leader slots for block production)
    known: bool = True  # False: no data at all, the weight moves to other components
    certainty: float = 1.0  # 0..1, how much of the sub-score is evidence rather than prior
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Component:
    measurement: Measurement
    weight: float  # effective weight after moving the weight of unknown components
    contribution: float  # points out of 100 before penalties

    def to_dict(self) -> dict[str, Any]:
        m = self.measurement
        weight = _ROUNDED_WEIGHTS.get(self.weight)
        if weight is None:
            weight = _rounded_weight(self.weight)
        return {
            "name": m.name,
            "raw": m.raw,
            "reference": m.reference,
            "score": _round(m.score, 6),
            "weight": weight,
            "contribution": _round(self.contribution, 4),
            "n": _round(m.n, 4),
            "known": m.known,
            **m.details,
        }


def _round(value: float, digits: int) -> float:
    """round(value, digits), skipped for 0.0 and 1.0 (most sub-scores and n): `round` formats the decimal
    digits, a quarter of the cost of a breakdown."""
    if type(value) is float and (value == 1.0 or value == 0.0):
        return value
    return round(value, digits)


# Effective weights take a handful of values (the configured weights over a few totals): rounded once each.
_ROUNDED_WEIGHTS: dict[float, float] = {}


def _rounded_weight(weight: float) -> float:
    if len(_ROUNDED_WEIGHTS) >= 1024:
        _ROUNDED_WEIGHTS.clear()
    rounded = _ROUNDED_WEIGHTS[weight] = round(weight, 6)
    return rounded


@dataclass(frozen=True, slots=True)
class Penalty:
    kind: str  # delinquent | private | withdrawer_is_identity | rug | repeat_rugger | superminority
    reason: str
    factor: float  # score *= 1 - factor (0 = marker only)
    since_epoch: int | None
    expires_epoch: int | None  # None: lasts while the condition holds (or forever for repeat_rugger)
    cap: float | None = None  # score ceiling imposed by this penalty

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "reason": self.reason,
            "factor": round(self.factor, 6),
            "since_epoch": self.since_epoch,
            "expires_epoch": self.expires_epoch,
        }
        if self.cap is not None:
            data["cap"] = self.cap
        return data


@dataclass(frozen=True, slots=True)
class CommissionEvent:
    vote_pubkey: str
    epoch: int
    kind: str  # rug | hike | decrease | change
    old_commission: int | None
    new_commission: int | None
    applied_commission: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "vote_pubkey": self.vote_pubkey,
            "epoch": self.epoch,
            "kind": self.kind,
            "old_commission": self.old_commission,
            "new_commission": self.new_commission,
            "applied_commission": self.applied_commission,
        }


@dataclass(frozen=True, slots=True)
class ScoreBreakdown:
    vote_pubkey: str
    epoch: int
    score: float  # 0..100 after penalties and caps
    base_score: float  # 0..100, weighted sum before penalties
    confidence: float  # 0..1
    components: tuple[Component, ...]
    penalties: tuple[Penalty, ...]
    events: tuple[CommissionEvent, ...]
    superminority: bool
    uptime: float  # percent, time-decayed share of polls not delinquent
    scoring_version: str
    applied: bool  # False when the record was a duplicate or older than the state (state unchanged)

    def component(self, name: str) -> Component:
        for comp in self.components:
            if comp.measurement.name == name:
                return comp
        raise KeyError(name)

    def penalty_kinds(self) -> list[str]:
        return [p.kind for p in self.penalties]

    def to_score_event(self, record: ValidatorRecord) -> ScoreEvent:
        return ScoreEvent(
            run_id=record.run_id,
            vote_pubkey=record.vote_pubkey,
            identity_pubkey=record.identity_pubkey,
            epoch=self.epoch,
            score=self.score,
            confidence=self.confidence,
            scoring_version=self.scoring_version,
            components=[c.to_dict() for c in self.components],
            penalties=[p.to_dict() for p in self.penalties],
            events=[e.to_dict() for e in self.events],
            uptime=self.uptime,
            # Shallow: the record is frozen, and dataclasses.asdict's deep copy dominated the cost.
            record=record_fields(record),
        )
