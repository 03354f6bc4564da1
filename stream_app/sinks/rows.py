"""Turn a batch of ScoreEvents into the rows the PostgreSQL sink stages (pure, no I/O).

Everything that could make PostgreSQL reject the whole batch (a score out of range, an unknown commission
event kind, a duplicate key inside one batch) is settled here, so one bad event becomes one recorded
failure instead of a batch that can never commit.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_app.records import ScoreEvent

COMMISSION_KINDS = frozenset({"rug", "hike", "decrease", "change"})
SMALLINT_COMMISSION = range(0, 101)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _commission(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value in SMALLINT_COMMISSION else None


def _int(value: Any, lo: int = -(2**63), hi: int = 2**63 - 1) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if lo <= value <= hi else None


def _text(value: Any) -> str | None:
    return value.replace("\x00", "") if isinstance(value, str) else None


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


@functools.lru_cache(maxsize=256)
def _is_uuid(text: str) -> bool:
    """A batch names one or two runs: each is parsed once, not once per event."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _unkeyable(event: ScoreEvent) -> str | None:
    if not _is_uuid(str(event.run_id)):
        return f"run_id {event.run_id!r} is not a UUID"
    if not isinstance(event.vote_pubkey, str) or not event.vote_pubkey or "\x00" in event.vote_pubkey:
        return f"vote_pubkey {event.vote_pubkey!r} is not a pubkey"
    if not isinstance(event.identity_pubkey, str) or "\x00" in event.identity_pubkey:
        return f"identity_pubkey {event.identity_pubkey!r} is not a pubkey"
    if _int(event.epoch, 0, 2**31 - 1) is None:
        return f"epoch {event.epoch!r} is not an epoch number"
    return None


def problem(event: ScoreEvent) -> str | None:
    """Why this event cannot be stored as a score, or None if it can."""
    return _assess(event)[0]


def _assess(event: ScoreEvent) -> tuple[str | None, str, str]:
    """(problem or None, components JSON, penalties JSON): the breakdown is serialised once, here."""
    if event.failed:
        return event.error or "scoring failed", "", ""
    score, confidence = _num(event.score), _num(event.confidence)
    if score is None or not 0 <= score <= 100:
        return f"score {event.score!r} is not a number in [0, 100]", "", ""
    if confidence is None or not 0 <= confidence <= 1:
        return f"confidence {event.confidence!r} is not a number in [0, 1]", "", ""
    if not isinstance(event.components, list) or not isinstance(event.penalties, list):
        return "components and penalties must be lists", "", ""
    try:
        return None, _json(event.components), _json(event.penalties)
    except TypeError as exc:
        return f"breakdown is not JSON-serialisable: {exc}", "", ""


@dataclass
class BatchRows:
    """Rows ready for COPY, each list sorted by vote account so concurrent writers lock in one order."""

    # (vote_account, validator_pubkey, name, website, details, icon_url, keybase_username, commission,
    #  activated_stake, uptime, delinquent, version, gossip_ip, authorized_withdrawer, epoch, score, run_id,
    #  observed_at)
    validators: list[tuple[Any, ...]] = field(default_factory=list)
    # (run_id, vote_account, score, confidence, components_json, penalties_json, scoring_version, epoch,
    #  applied)
    scores: list[tuple[Any, ...]] = field(default_factory=list)
    # (run_id, vote_account, error)
    failures: list[tuple[Any, ...]] = field(default_factory=list)
    # (vote_account, epoch, credits, commission, activated_stake, leader_slots, blocks_produced, delinquent,
    #  observed_run_id)  -- observed_run_id is NULL for past epochs read from epochCredits
    history: list[tuple[Any, ...]] = field(default_factory=list)
    # (vote_account, epoch, commission_applied)
    applied: list[tuple[Any, ...]] = field(default_factory=list)
    # (vote_account, epoch, kind, old_commission, new_commission, applied_commission, run_id, details_json)
    commission_events: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: list[tuple[ScoreEvent, str]] = field(default_factory=list)  # cannot belong to any run
    runs: dict[str, int] = field(default_factory=dict)  # run_id -> epoch
    scored: dict[str, list[str]] = field(default_factory=dict)  # run_id -> vote accounts in this batch


def _validator_row(event: ScoreEvent, rec: dict[str, Any], score: float | None) -> tuple[Any, ...]:
    uptime = _num(event.uptime)
    return (
        event.vote_pubkey,
        _text(rec.get("identity_pubkey")) or event.identity_pubkey,
        _text(rec.get("name")), _text(rec.get("website")), _text(rec.get("details")),
        _text(rec.get("icon_url")), _text(rec.get("keybase_username")),
        _commission(rec.get("commission")),
        max(0, _int(rec.get("activated_stake")) or 0),
        min(100.0, max(0.0, uptime)) if uptime is not None else 0.0,
        bool(rec.get("delinquent", False)),
        _text(rec.get("version")), _text(rec.get("gossip_ip")), _text(rec.get("authorized_withdrawer")),
        _int(event.epoch, -(2**31), 2**31 - 1),
        score,
        event.run_id,
        _num(rec.get("observed_at")),
    )


def _history_rows(event: ScoreEvent, rec: dict[str, Any]) -> list[tuple[Any, ...]]:
    rows: dict[int, tuple[Any, ...]] = {}
    vote = event.vote_pubkey
    for entry in rec.get("epoch_credits") or ():
        try:
            e, c, p = entry
            epoch, credits, previous = int(e), int(c), int(p)
        except (TypeError, ValueError):
            continue
        if 0 <= epoch < 2**31 and credits >= previous:
            rows[epoch] = (vote, epoch, credits - previous, None, None, None, None, False, None)
    current = _int(rec.get("epoch", event.epoch), 0, 2**31 - 1)
    if current is not None:
        earned = rows.get(current, (None, None, None))[2]
        rows[current] = (
            event.vote_pubkey, current, earned, _commission(rec.get("commission")),
            _int(rec.get("activated_stake"), 0), _int(rec.get("leader_slots"), 0, 2**31 - 1),
            _int(rec.get("blocks_produced"), 0, 2**31 - 1), bool(rec.get("delinquent", False)), event.run_id,
        )
    return [rows[e] for e in sorted(rows)]


def _event_rows(event: ScoreEvent) -> list[tuple[Any, ...]]:
    out = []
    for ev in event.events or ():
        if not isinstance(ev, dict) or ev.get("kind") not in COMMISSION_KINDS:
            continue
        epoch = _int(ev.get("epoch"), 0, 2**31 - 1)
        if epoch is None:
            continue
        out.append((event.vote_pubkey, epoch, ev["kind"], _commission(ev.get("old_commission")),
                    _commission(ev.get("new_commission")), _commission(ev.get("applied_commission")),
                    event.run_id, _json(ev)))
    return out


def plan_batch(events: Iterable[ScoreEvent], skip: Collection[tuple[str, str]] = ()) -> BatchRows:
    """Stage rows for a batch. A later event for the same (run, validator) replaces an earlier one.

    `skip`: (run_id, vote_pubkey) pairs whose stored result must stay as it is (replays).
    """
    rows = BatchRows()
    latest: dict[tuple[str, str], ScoreEvent] = {}
    for event in events:
        why = _unkeyable(event)
        if why:
            rows.rejected.append((event, why))
        elif (event.run_id, event.vote_pubkey) not in skip:
            latest[(event.run_id, event.vote_pubkey)] = event
    validators: dict[str, tuple[Any, ...]] = {}
    history: dict[str, dict[int, tuple[Any, ...]]] = {}  # vote -> epoch -> row (sorted at the end)
    applied: dict[tuple[str, int], tuple[Any, ...]] = {}
    commission: dict[tuple[str, int, str], tuple[Any, ...]] = {}
    for run_id, vote in sorted(latest):
        event = latest[(run_id, vote)]
        rec = event.record if isinstance(event.record, dict) else {}
        why, components, penalties = _assess(event)
        score = None if why else float(event.score)
        if why:
            rows.failures.append((run_id, vote, why[:2000]))
        else:
            rows.scores.append((run_id, vote, score, float(event.confidence), components, penalties,
                                str(event.scoring_version), event.epoch, event.applied is not False))
        candidate = _validator_row(event, rec, score)
        current = validators.get(vote)
        # Several runs of one validator in one batch: the newest observation describes it.
        if current is None or (candidate[17] or 0) >= (current[17] or 0):
            validators[vote] = candidate
        epochs = history.get(vote)
        if epochs is None:
            epochs = history[vote] = {}
        for h in _history_rows(event, rec):
            old = epochs.get(h[1])
            if old is None or h[8] is not None or old[8] is None:
                epochs[h[1]] = h
        applied_epoch = _int(rec.get("applied_commission_epoch"), 0, 2**31 - 1)
        applied_value = _commission(rec.get("applied_commission"))
        if applied_epoch is not None and applied_value is not None:
            applied[(vote, applied_epoch)] = (vote, applied_epoch, applied_value)
        for ev in _event_rows(event):
            commission.setdefault((vote, ev[1], ev[2]), ev)
        rows.runs.setdefault(run_id, event.epoch)
        rows.scored.setdefault(run_id, []).append(vote)
    rows.validators = [validators[v] for v in sorted(validators)]
    # By vote, then epoch: as sorting the (vote, epoch) pairs would, without comparing thousands of tuples.
    rows.history = [row for vote in sorted(history) for _, row in sorted(history[vote].items())]
    rows.applied = [applied[k] for k in sorted(applied)]
    rows.commission_events = [commission[k] for k in sorted(commission)]
    return rows
