"""The records that flow through the pipeline, as plain typed values (no I/O).

    RPC source ──ClusterSnapshot──► fetcher ──RunHeader + ValidatorRecord──► topic "validator-records"
    scoring ──ScoreEvent──► topic "trust-scores" ──► PostgreSQL sink, live updates

Each record converts to and from a JSON-safe dict (`to_dict` / `from_dict`) so it can travel through any
Faust transport, and `from_dict` validates what it reads: a malformed record raises `RecordError`
instead of producing a silently wrong number downstream.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, NamedTuple, TypeVar

LAMPORTS_PER_SOL = 1_000_000_000
U64_MAX = 2**64 - 1  # Alpenglow sentinel in epochCredits

T = TypeVar("T", bound="_Record")


class RecordError(ValueError):
    """A record (or RPC value) failed validation."""


class _Record:
    """Mixin: dict round-trip with type checks on the way in."""

    _tuple_fields: ClassVar[dict[str, int]] = {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: Any) -> T:
        if not isinstance(data, dict):
            raise RecordError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        # An absent field takes the dataclass default, or the constructor reports it missing; keys that are
        # no field are left out.
        names, known, _ = _fields(cls)
        kwargs = dict(data) if data.keys() <= known else {name: data[name] for name in names if name in data}
        for name in cls._tuple_fields:
            if name in kwargs:
                kwargs[name] = cls._coerce(name, kwargs[name])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise RecordError(f"{cls.__name__}: {exc}") from None

    @classmethod
    def _coerce(cls, name: str, value: Any) -> Any:
        if name in cls._tuple_fields and isinstance(value, list):
            width = cls._tuple_fields[name]
            return tuple(tuple(item) if width else item for item in value)
        return value


class _Fields(NamedTuple):
    names: tuple[str, ...]
    known: frozenset[str]
    values: Callable[[Any], tuple[Any, ...]]  # every field's value, in order, in one C call


_FIELDS: dict[type, _Fields] = {}


def _fields(cls: type) -> _Fields:
    """A class's field names, their set and a getter of all values, computed once per class
    (`dataclasses.fields` rebuilds a tuple on every call)."""
    found = _FIELDS.get(cls)
    if found is None:
        names = tuple(f.name for f in fields(cls))
        getter = operator.attrgetter(*names)
        values = getter if len(names) > 1 else (lambda record: (getter(record),))
        found = _FIELDS[cls] = _Fields(names, frozenset(names), values)
    return found


def record_fields(record: Any) -> dict[str, Any]:
    """A shallow dict of a record's fields (the values are shared, not copied)."""
    names, _, values = _fields(type(record))
    return dict(zip(names, values(record), strict=True))


@dataclass(frozen=True, slots=True)
class EpochCredits:
    """One `epochCredits` entry: cumulative credits at the end (so far) and at the start of an epoch."""

    epoch: int
    credits: int
    previous_credits: int

    @property
    def earned(self) -> int:
        return self.credits - self.previous_credits


@dataclass(frozen=True, slots=True)
class RunHeader(_Record):
    """Opens a scoring run: what the fetcher saw and how many validator records will follow."""

    run_id: str
    epoch: int
    slot: int
    expected_count: int
    started_at: float  # unix seconds
    source: str = ""  # RPC URL or "simulator"
    trigger: str = "timer"  # timer | cli | admin
    slot_index: int = 0
    slots_in_epoch: int = 432_000


@dataclass(frozen=True, slots=True)
class ClusterContext(_Record):
    """Cluster-wide references for one run, computed once by the fetcher from the whole snapshot.

    Scoring is per validator and O(1); everything that needs the whole cluster (medians, the
    superminority threshold, the version held by 66% of stake) is here.
    """

    run_id: str
    epoch: int
    slot: int
    slot_index: int
    slots_in_epoch: int
    total_active_stake: int  # lamports
    validator_count: int
    superminority_min_stake: int  # smallest stake inside the superminority (lamports)
    # Reference credits per finished epoch: {epoch: stake-weighted median credits of voting validators}
    reference_credits: dict[str, int] = field(default_factory=dict)
    cluster_skip_rate: float | None = None  # stake-weighted, current epoch
    # Version reached by 66% of stake, per client family ("agave", "firedancer", ...)
    consensus_versions: dict[str, str] = field(default_factory=dict)
    observed_at: float = 0.0
    # Cluster prior sub-scores (0..1) per scoring component, for smoothing validators with little history
    priors: dict[str, float] = field(default_factory=dict)
    # Share of active stake per gossip IP prefix ("a.b.0.0/16"), a proxy for hosting concentration
    infra_stake_share: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ValidatorRecord(_Record):
    """Everything scoring needs about one vote account in one run. Keyed by `vote_pubkey` on the stream."""

    _tuple_fields: ClassVar[dict[str, int]] = {"epoch_credits": 3}

    run_id: str
    vote_pubkey: str
    identity_pubkey: str
    epoch: int
    slot: int
    observed_at: float  # unix seconds of the fetch
    commission: int  # percent, 0..100
    activated_stake: int  # lamports
    epoch_credits: tuple[tuple[int, int, int], ...]  # (epoch, credits, previous_credits), sentinel removed
    last_vote: int
    root_slot: int | None
    delinquent: bool
    epoch_vote_account: bool = True
    # getClusterNodes
    version: str | None = None
    gossip_ip: str | None = None
    # getBlockProduction (current epoch so far)
    leader_slots: int | None = None
    blocks_produced: int | None = None
    # Config program validator-info
    name: str | None = None
    website: str | None = None
    details: str | None = None
    icon_url: str | None = None
    keybase_username: str | None = None
    # Vote account (jsonParsed)
    authorized_withdrawer: str | None = None
    # getInflationReward at rollover: commission actually applied for `applied_commission_epoch`
    applied_commission: int | None = None
    applied_commission_epoch: int | None = None
    # Optional MEV commission in basis points (not from RPC; left None unless a source provides it)
    mev_commission_bps: int | None = None

    def credits(self) -> list[EpochCredits]:
        return [EpochCredits(e, c, p) for e, c, p in self.epoch_credits]


@dataclass(frozen=True, slots=True)
class ScoreEvent(_Record):
    """One validator's score in one run, with its full explanation. Keyed by `vote_pubkey`."""

    run_id: str
    vote_pubkey: str
    identity_pubkey: str
    epoch: int
    score: float  # 0..100
    confidence: float  # 0..1
    scoring_version: str
    components: list[dict[str, Any]]  # name, raw, reference, score, weight, contribution, n
    penalties: list[dict[str, Any]]  # kind, reason, factor, since_epoch, expires_epoch
    events: list[dict[str, Any]] = field(default_factory=list)  # commission events detected now
    uptime: float = 0.0  # percent, for the seed's `uptime` field
    record: dict[str, Any] | None = None  # the ValidatorRecord it was computed from (for the sink)
    failed: bool = False  # scoring raised: counted as a failure of the run
    error: str | None = None
    # False when the record did not move the scoring state (a replay, or older than the state): the sink
    # then never changes a stored result with it (an older run re-scored against a newer state differs).
    applied: bool = True
