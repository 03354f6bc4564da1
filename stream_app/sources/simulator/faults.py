"""Fault injection for the RPC simulator, switchable at run time (in process or over POST /_sim/faults).

A fault rule matches requests by JSON-RPC method (or all methods) and fires a number of times (or forever):

    {"kind": "rate_limit", "methods": ["getVoteAccounts"], "times": 2, "retry_after": 1}
    {"kind": "server_error", "status": 503}
    {"kind": "slow", "delay": 0.5}            # answer correctly, late
    {"kind": "timeout", "delay": 30}          # hold the request longer than any client waits
    {"kind": "truncate"}                      # Content-Length of the full body, half of it sent, then close
    {"kind": "malformed_json"}
    {"kind": "wrong_types", "every": 100}     # every 100th list entry (or the object) gets a wrong-typed field
    {"kind": "missing_fields", "every": 100}  # ... a required field removed
    {"kind": "stale", "lag_slots": 5000}      # a lagging node: slot, epoch info and lastVote behind the tip
    {"kind": "rpc_error", "code": -32005}     # a JSON-RPC error object

The first matching rule with shots left wins. Rules are pure data; `corrupt()` is pure too.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = frozenset({
    "rate_limit", "server_error", "slow", "timeout", "truncate", "malformed_json", "wrong_types",
    "missing_fields", "stale", "rpc_error",
})
# The field each method's entries lose or get wrong; the first list-valued container in the result is used.
_TARGET_FIELD = {
    "getVoteAccounts": "activatedStake",
    "getEpochInfo": "absoluteSlot",
    "getClusterNodes": "pubkey",
    "getProgramAccounts": "pubkey",
    "getBlockProduction": "byIdentity",
    "getMultipleAccounts": "owner",
    "getInflationReward": "commission",
}


class FaultError(ValueError):
    """A fault rule that cannot be used."""


@dataclass
class FaultRule:
    kind: str
    methods: tuple[str, ...] = ()  # empty: every method
    times: int | None = None  # None: forever
    status: int = 503
    retry_after: float | None = 1.0
    delay: float = 1.0
    every: int = 1
    lag_slots: int = 5_000
    code: int = -32005
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultError(f"unknown fault kind {self.kind!r}; known: {', '.join(sorted(KINDS))}")
        if self.every < 1:
            raise FaultError("every must be >= 1")
        self.methods = tuple(self.methods)

    @classmethod
    def from_dict(cls, data: Any) -> FaultRule:
        if not isinstance(data, dict):
            raise FaultError("a fault rule is a JSON object")
        known = {f for f in cls.__dataclass_fields__ if f != "fired"}
        unknown = set(data) - known
        if unknown:
            raise FaultError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise FaultError(str(exc)) from None

    def matches(self, method: str) -> bool:
        return (not self.methods or method in self.methods) and (self.times is None or self.fired < self.times)


@dataclass
class FaultPlan:
    rules: list[FaultRule] = field(default_factory=list)

    def add(self, kind: str, **options: Any) -> FaultRule:
        rule = FaultRule.from_dict({"kind": kind, **options})
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def take(self, method: str) -> FaultRule | None:
        """The rule that fires for this request (its shot is used), or None."""
        for rule in self.rules:
            if rule.matches(method):
                rule.fired += 1
                return rule
        return None

    def describe(self) -> list[dict[str, Any]]:
        return [asdict(rule) for rule in self.rules]


def corrupt(method: str, result: Any, kind: str, every: int) -> Any:
    """A copy of `result` with a field of every `every`-th entry made wrong-typed or removed."""
    result = copy.deepcopy(result)
    target = _TARGET_FIELD.get(method)
    entries = _entries(result)
    for i, entry in enumerate(entries):
        if i % every:
            continue
        if not isinstance(entry, dict):
            continue
        key = target if target in entry else next(iter(entry), None)
        if key is None:
            continue
        if kind == "missing_fields":
            del entry[key]
        else:
            entry[key] = _wrong(entry[key])
    return result


def _entries(result: Any) -> list[Any]:
    if isinstance(result, list):
        return result
    if isinstance(result, dict):
        for key in ("current", "value"):
            if isinstance(result.get(key), list):
                out = list(result[key])
                if key == "current" and isinstance(result.get("delinquent"), list):
                    out += result["delinquent"]
                return out
        if isinstance(result.get("value"), dict):
            return [result["value"]]
        return [result]
    return []


def _wrong(value: Any) -> Any:
    if isinstance(value, bool):
        return "true"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return 12345
    if isinstance(value, dict):
        return [value]
    return {"unexpected": value}
