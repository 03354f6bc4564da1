"""update(): idempotence, late records, serialisable state, clear errors on bad input."""

from __future__ import annotations

import orjson
import pytest

from stream_app.records import RecordError, ScoreEvent
from stream_app.scoring import SCORING_VERSION, ScoringConfig, state_from_dict, state_to_dict, update
from stream_app.scoring.config import ConfigError
from stream_app.scoring.state import ValidatorState
from tests.scoring.conftest import EPOCH, make_context, make_record


def test_same_record_twice_changes_nothing() -> None:
    rec, ctx = make_record(), make_context()
    once, first = update(None, rec, ctx)
    twice, second = update(once, rec, ctx)
    assert twice == once
    assert first.applied and not second.applied
    assert second.score == pytest.approx(first.score)


def test_an_older_record_is_ignored_for_state_but_still_explained() -> None:
    newer = make_record(epoch=EPOCH + 1, commission=7)
    older = make_record(commission=5, delinquent=True)
    state, _ = update(None, newer, make_context(epoch=EPOCH + 1))
    after, breakdown = update(state, older, make_context())
    assert after == state
    assert not breakdown.applied
    assert breakdown.epoch == EPOCH


def test_update_never_mutates_the_given_state() -> None:
    state, _ = update(None, make_record(), make_context())
    snapshot = state_to_dict(state)
    update(state, make_record(epoch=EPOCH + 1, commission=9), make_context(epoch=EPOCH + 1))
    assert state_to_dict(state) == snapshot


def test_state_round_trips_through_json() -> None:
    state = None
    for epoch in range(EPOCH, EPOCH + 4):
        rec = make_record(epoch=epoch, commission=5 + epoch % 2 * 5, leader_slots=12, blocks_produced=11)
        state, _ = update(state, rec, make_context(epoch=epoch))
    assert state is not None
    wire = orjson.dumps(state_to_dict(state))
    assert state_from_dict(orjson.loads(wire)) == state
    assert len(wire) < 1_000


@pytest.mark.parametrize(
    "bad",
    ["nope", {"vote_n": "three"}, {"commission_epochs": {"100": [1, 2]}}, {"mystery": 1}, {"rugs": [[1]]}],
)
def test_bad_state_is_a_clear_error(bad: object) -> None:
    with pytest.raises(RecordError, match="ValidatorState"):
        state_from_dict(bad)


@pytest.mark.parametrize(
    "overrides",
    [{"commission": 150}, {"activated_stake": -1}, {"leader_slots": 5}, {"leader_slots": 5, "blocks_produced": 6}],
)
def test_bad_record_is_a_clear_error_and_loses_nothing(overrides: dict[str, int]) -> None:
    state, _ = update(None, make_record(), make_context())
    before = state_to_dict(state)
    with pytest.raises(RecordError, match="cannot score Vote111"):
        update(state, make_record(epoch=EPOCH + 1, **overrides), make_context(epoch=EPOCH + 1))
    assert state_to_dict(state) == before


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ConfigError, match="sum"):
        ScoringConfig(weights={"vote_performance": 0.5})
    with pytest.raises(ConfigError, match="unknown"):
        ScoringConfig(weights={"vote_performance": 0.5, "karma": 0.5})


def test_score_event_carries_the_explanation() -> None:
    rec = make_record()
    _, breakdown = update(None, rec, make_context())
    event = breakdown.to_score_event(rec)
    assert event.scoring_version == SCORING_VERSION
    assert event.score == breakdown.score and 0 <= event.score <= 100
    names = [c["name"] for c in event.components]
    assert names[0] == "vote_performance" and len(names) == 9
    assert set(event.components[0]) >= {"name", "raw", "reference", "score", "weight", "contribution", "n"}
    wire = orjson.loads(orjson.dumps(event.to_dict()))
    back = ScoreEvent.from_dict(wire)
    assert back.components == event.components and back.penalties == event.penalties
    assert orjson.loads(orjson.dumps(back.to_dict())) == wire


def test_version_is_configurable_and_stored() -> None:
    cfg = ScoringConfig(version="trust-experimental")
    _, breakdown = update(ValidatorState(), make_record(), make_context(), cfg)
    assert breakdown.scoring_version == "trust-experimental"


def test_confidence_grows_with_history() -> None:
    state, first = update(None, make_record(epoch_credits=()), make_context())
    for epoch in range(EPOCH + 1, EPOCH + 10):
        state, last = update(state, make_record(epoch=epoch), make_context(epoch=epoch))
    assert 0 <= first.confidence < last.confidence <= 1
