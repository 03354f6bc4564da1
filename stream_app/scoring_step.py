"""One scoring step as the agent runs it (pure): state bytes + record + context -> state bytes + event.

The table stores the scoring state as orjson bytes. A record that scoring rejects (or a state that no
longer decodes) still yields a ScoreEvent, marked failed with the reason, so the run's fail count is
exact and nothing disappears silently.
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from stream_app.records import ClusterContext, ScoreEvent, ValidatorRecord
from stream_app.scoring import SCORING_VERSION, ValidatorState, state_from_dict, update


def failed_event(run_id: str, vote_pubkey: str, error: str, *, identity_pubkey: str = "", epoch: int = 0,
                 record: dict[str, object] | None = None) -> ScoreEvent:
    return ScoreEvent(run_id=run_id, vote_pubkey=vote_pubkey, identity_pubkey=identity_pubkey, epoch=epoch,
                      score=0.0, confidence=0.0, scoring_version=SCORING_VERSION, components=[], penalties=[],
                      record=record, failed=True, error=error[:2000])


class DecodedStates:
    """Per validator, the state behind the last state bytes scored here: a table value that is still that
    very bytes object (the table hands back what was put in) is not parsed again. At most `size` entries,
    oldest out first; a value from anywhere else (a changelog recovery) is a miss and is parsed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: dict[str, tuple[bytes, ValidatorState]] = {}

    def get(self, vote_pubkey: str, raw: bytes) -> ValidatorState | None:
        entry = self._entries.get(vote_pubkey)
        return entry[1] if entry is not None and entry[0] is raw else None

    def put(self, vote_pubkey: str, raw: bytes, state: ValidatorState) -> None:
        entries = self._entries
        entries.pop(vote_pubkey, None)
        if len(entries) >= self.size:
            del entries[next(iter(entries))]
        entries[vote_pubkey] = (raw, state)


def score_step(raw_state: bytes | None, record: ValidatorRecord, context: ClusterContext | None,
               decoded: DecodedStates | None = None) -> tuple[bytes | None, ScoreEvent]:
    """Returns (new state bytes, or None to leave the table untouched; the event to emit).

    `decoded` remembers the states behind the bytes returned here (`update` never mutates a state it is
    given, so a remembered one stays exactly what its bytes say)."""
    def fail(why: str) -> tuple[None, ScoreEvent]:
        return None, failed_event(record.run_id, record.vote_pubkey, why, identity_pubkey=record.identity_pubkey,
                                  epoch=record.epoch, record=record.to_dict())

    if context is None:
        return fail(f"no cluster context for run {record.run_id}")
    state = decoded.get(record.vote_pubkey, raw_state) if decoded is not None and raw_state else None
    if state is None and raw_state:
        try:
            state = state_from_dict(orjson.loads(raw_state))
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            return fail(f"stored scoring state is unreadable: {exc}")
    try:
        new_state, breakdown = update(state, record, context)
    except (ValueError, TypeError, ArithmeticError, KeyError) as exc:
        return fail(f"{type(exc).__name__}: {exc}")
    if not breakdown.applied:
        return None, replace(breakdown.to_score_event(record), applied=False)
    # orjson writes the slotted dataclass as `state_to_dict` would (fields in order, epoch keys as strings),
    # without building that dict first.
    new_raw = _exact(orjson.dumps(new_state, option=orjson.OPT_NON_STR_KEYS))
    if decoded is not None:
        decoded.put(record.vote_pubkey, new_raw, new_state)
    return new_raw, breakdown.to_score_event(record)


def _exact(raw: bytes) -> bytes:
    """A right-sized copy. orjson 3.13 returns bytes that keep a 4-8 KiB allocation whatever their length
    (measured with tracemalloc: a 545-byte state held 8 KiB); the table keeps one per validator, which made
    a 100k-validator worker grow by ~800 MB."""
    return memoryview(raw).tobytes()
