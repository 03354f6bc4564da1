"""The agent's scoring step (pure): state bytes in and out, failures as events, replays harmless."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream_app.records import ClusterContext
from stream_app.scoring_step import DecodedStates, score_step
from tests.pipeline.factories import record

RUN = "6f1c1f5e-9d7e-4c55-8a43-1f0c1e7b1a01"


def _context() -> ClusterContext:
    return ClusterContext(run_id=RUN, epoch=752, slot=752 * 432_000 + 1000, slot_index=1000,
                          slots_in_epoch=432_000, total_active_stake=10**18, validator_count=100,
                          superminority_min_stake=10**16, reference_credits={"751": 5_999_900})


@given(st.integers(0, 500), st.integers(0, 100), st.booleans())
def test_a_replayed_record_leaves_the_state_alone_and_scores_the_same(i: int, commission: int,
                                                                     delinquent: bool) -> None:
    rec = record(RUN, i, commission=commission, delinquent=delinquent, observed_at=1000.0)
    state, first = score_step(None, rec, _context())
    assert state is not None and not first.failed and 0 <= first.score <= 100
    again_state, again = score_step(state, rec, _context())
    assert again_state is None  # nothing to write to the table
    assert (again.score, again.components) == (first.score, first.components)


def test_no_context_or_unreadable_state_becomes_a_failed_event() -> None:
    rec = record(RUN, 1)
    _state, missing = score_step(None, rec, None)
    assert missing.failed and "no cluster context" in (missing.error or "")
    _state, garbled = score_step(b"{not json", rec, _context())
    assert garbled.failed and "unreadable" in (garbled.error or "")
    _state, rejected = score_step(None, record(RUN, 2, commission=150), _context())
    assert rejected.failed and "commission" in (rejected.error or "")
    assert rejected.vote_pubkey == record(RUN, 2).vote_pubkey


def test_remembered_states_score_exactly_as_parsed_ones() -> None:
    decoded = DecodedStates(2)
    plain: dict[int, bytes | None] = {}
    remembered: dict[int, bytes | None] = {}
    for step, (i, commission) in enumerate([(1, 5), (2, 7), (1, 6), (3, 5), (1, 9), (2, 7), (2, 8)]):
        rec = record(RUN, i, commission=commission, observed_at=1000.0 + step)
        raw, event = score_step(plain.get(i), rec, _context())
        raw_r, event_r = score_step(remembered.get(i), rec, _context(), decoded)
        assert raw == raw_r and event == event_r
        plain[i], remembered[i] = raw, raw_r
    # Only the very bytes object handed out is trusted: an equal copy (as a changelog recovery gives) is parsed.
    copy = bytes(bytearray(remembered[2] or b""))
    assert decoded.get(record(RUN, 2).vote_pubkey, copy) is None
    assert decoded.get(record(RUN, 2).vote_pubkey, remembered[2] or b"") is not None
    assert decoded.get(record(RUN, 3).vote_pubkey, remembered[3] or b"") is None  # evicted (size 2)
