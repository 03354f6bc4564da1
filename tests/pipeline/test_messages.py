"""Wire format (pure): round trips, and malformed messages rejected with a reason."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.messages import (
    HeaderMessage,
    MessageError,
    decode_score,
    decode_validator_message,
    dumps_wide,
    encode_header,
    encode_record,
    encode_score,
    identify,
)
from stream_app.records import ClusterContext
from tests.pipeline.factories import header, new_run_id, record, score_event


@given(st.integers(0, 10_000), st.integers(0, 100), st.booleans(), st.floats(0, 100))
def test_records_and_scores_round_trip_and_match_to_dict(i: int, commission: int, delinquent: bool,
                                                        score: float) -> None:
    run = "6f1c1f5e-9d7e-4c55-8a43-1f0c1e7b1a01"
    rec = record(run, i, commission=commission, delinquent=delinquent, observed_at=1.5)
    assert decode_validator_message(encode_record(rec)) == rec
    assert orjson.loads(encode_record(rec))["record"] == orjson.loads(orjson.dumps(rec.to_dict()))
    event = score_event(run, i, score=score, rec=rec)
    wire = encode_score(event)
    assert orjson.loads(wire) == orjson.loads(orjson.dumps(event.to_dict()))
    decoded = decode_score(wire)
    assert (decoded.run_id, decoded.vote_pubkey, decoded.score) == (event.run_id, event.vote_pubkey, event.score)
    assert encode_score(decoded) == wire


def test_header_round_trip() -> None:
    run = new_run_id()
    ctx = ClusterContext(run_id=run, epoch=752, slot=1, slot_index=1, slots_in_epoch=432_000,
                         total_active_stake=10, validator_count=3, superminority_min_stake=5,
                         reference_credits={"751": 100})
    decoded = decode_validator_message(encode_header(header(run, 3), ctx))
    assert isinstance(decoded, HeaderMessage) and decoded.context == ctx and decoded.header.expected_count == 3


@pytest.mark.parametrize("raw", [b"", b"nope", b"[1]", b'{"kind": "song"}', b'{"kind": "record", "record": 5}',
                                 b'{"kind": "record", "record": {"run_id": "r", "vote_pubkey": "v"}}', 42])
def test_malformed_validator_messages_raise_a_message_error(raw: object) -> None:
    with pytest.raises(MessageError):
        decode_validator_message(raw)


def test_identify_recovers_run_and_validator_of_a_broken_record() -> None:
    assert identify(b'{"kind": "record", "record": {"run_id": "r", "vote_pubkey": "v", "commission": "x"}}') == (
        "r", "v")
    assert identify(b"garbage") is None
    assert identify(b'{"kind": "record", "record": {"run_id": 5}}') is None


def test_malformed_scores_raise_a_message_error() -> None:
    for raw in (b"{}", b"[]", b"\xff"):
        with pytest.raises(MessageError):
            decode_score(raw)


def test_cluster_totals_past_64_bits_still_encode() -> None:
    run = new_run_id()
    ctx = ClusterContext(run_id=run, epoch=752, slot=1, slot_index=1, slots_in_epoch=432_000,
                         total_active_stake=2**70, validator_count=100_000, superminority_min_stake=5)
    decoded = decode_validator_message(encode_header(header(run, 3), ctx))
    assert isinstance(decoded, HeaderMessage) and decoded.context.total_active_stake == float(2**70)
    assert orjson.loads(dumps_wide({"a": 1})) == {"a": 1}
