"""Batch planning (pure): every (run, validator) lands exactly once, as a score or a failure."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from stream_app.records import ScoreEvent
from stream_app.sinks.rows import plan_batch, problem
from tests.pipeline.factories import score_event

RUNS = ["6f1c1f5e-9d7e-4c55-8a43-1f0c1e7b1a01", "0b7d4a8e-2f6b-4a0e-9f8e-3c5d7e9a1b02", "bad-run-id"]
scores = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 105))
events = st.builds(
    lambda run, i, score, failed, commission: score_event(run, i, score=score, failed=failed, commission=commission),
    st.sampled_from(RUNS), st.integers(0, 20), scores, st.booleans(), st.integers(-3, 130),
)


@given(st.lists(events, max_size=40))
def test_each_keyable_pair_is_planned_once_as_score_or_failure(batch: list[ScoreEvent]) -> None:
    rows = plan_batch(batch)
    planned = [(r[0], r[1]) for r in rows.scores] + [(f[0], f[1]) for f in rows.failures]
    keyable = {(e.run_id, e.vote_pubkey) for e in batch if e.run_id != "bad-run-id"}
    assert sorted(planned) == sorted(keyable)
    assert len(rows.rejected) == sum(1 for e in batch if e.run_id == "bad-run-id")
    assert all(0 <= r[2] <= 100 and math.isfinite(r[2]) for r in rows.scores)
    assert all(r[7] is None or 0 <= r[7] <= 100 for r in rows.validators)
    assert len({r[0] for r in rows.validators}) == len(rows.validators)
    assert sorted(rows.scored) == sorted({run for run, _ in keyable})


@given(st.lists(events, max_size=30))
def test_planning_is_idempotent_under_duplication(batch: list[ScoreEvent]) -> None:
    once, twice = plan_batch(batch), plan_batch(batch + batch)
    assert (once.scores, once.failures, once.validators, once.history) == (
        twice.scores, twice.failures, twice.validators, twice.history)


def test_the_last_event_for_a_pair_wins() -> None:
    run = RUNS[0]
    rows = plan_batch([score_event(run, 1, score=10), score_event(run, 1, score=70)])
    assert [r[2] for r in rows.scores] == [70.0]


def test_worked_example_of_history_rows() -> None:
    rows = plan_batch([score_event(RUNS[0], 3, commission=8, delinquent=True)])
    assert rows.history == [
        ("Vote" + "0" * 39 + "3", 751, 5_999_900, None, None, None, None, False, None),
        ("Vote" + "0" * 39 + "3", 752, 100_000, 8, 4_000_000_000, 40, 39, True, RUNS[0]),
    ]


def test_problem_explains_why_a_score_cannot_be_stored() -> None:
    assert problem(score_event(RUNS[0], 1)) is None
    assert "score" in (problem(score_event(RUNS[0], 1, score=-1)) or "")
    assert problem(score_event(RUNS[0], 1, failed=True)) == "boom"
