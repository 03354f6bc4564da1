"""Worked examples for every penalty and for commission rug / hike detection and events."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stream_app.records import ValidatorRecord
from stream_app.scoring.breakdown import ScoreBreakdown
from stream_app.scoring.config import DEFAULT_CONFIG as CFG
from stream_app.scoring.model import update
from stream_app.scoring.rugs import rug_expiry_epoch, rug_factor
from stream_app.scoring.state import ValidatorState
from tests.scoring.conftest import EPOCH, SLOTS, make_context, make_record


def poll(epoch: int, commission: int, step: int = 0, **extra: object) -> ValidatorRecord:
    """A poll in `epoch` at a quarter-epoch `step` (0..3) with the given commission."""
    slot = epoch * SLOTS + step * SLOTS // 4 + 10
    return make_record(epoch=epoch, slot=slot, observed_at=slot * 0.4, commission=commission, **extra)


def run(polls: list[ValidatorRecord]) -> tuple[ValidatorState, list[ScoreBreakdown]]:
    state: ValidatorState | None = None
    out = []
    for rec in polls:
        state, breakdown = update(state, rec, make_context(epoch=rec.epoch))
        out.append(breakdown)
    assert state is not None
    return state, out


def kinds(breakdowns: list[ScoreBreakdown]) -> list[str]:
    return [e.kind for b in breakdowns for e in b.events]


def test_delinquent_halves_the_score_and_says_since_when() -> None:
    _, healthy = update(None, make_record(), make_context())
    _, sick = update(None, make_record(delinquent=True), make_context())
    penalty = next(p for p in sick.penalties if p.kind == "delinquent")
    assert penalty.factor == 0.5 and penalty.since_epoch == EPOCH and penalty.expires_epoch is None
    assert sick.score == pytest.approx(sick.base_score * 0.5)
    assert sick.score < healthy.score


def test_delinquent_since_is_the_first_epoch_seen_delinquent() -> None:
    state, _ = run([poll(EPOCH, 5, delinquent=True)])
    state, out = run_from(state, [poll(EPOCH + 1, 5, delinquent=True)])
    assert next(p for p in out[-1].penalties if p.kind == "delinquent").since_epoch == EPOCH
    state, out = run_from(state, [poll(EPOCH + 2, 5)])
    assert "delinquent" not in out[-1].penalty_kinds() and state.delinquent_since is None


def run_from(state: ValidatorState, polls: list[ValidatorRecord]) -> tuple[ValidatorState, list[ScoreBreakdown]]:
    out = []
    for rec in polls:
        state, breakdown = update(state, rec, make_context(epoch=rec.epoch))
        out.append(breakdown)
    return state, out


def test_commission_100_is_private_and_scores_zero() -> None:
    _, breakdown = update(None, make_record(commission=100), make_context())
    assert breakdown.score == 0.0
    assert breakdown.base_score > 0  # the components still explain everything else
    assert "private" in breakdown.penalty_kinds()


def test_withdrawer_equal_to_identity_costs_ten_percent() -> None:
    rec = make_record(authorized_withdrawer="Node111", name="A", website="w", details="d", icon_url="i")
    _, breakdown = update(None, rec, make_context())
    penalty = next(p for p in breakdown.penalties if p.kind == "withdrawer_is_identity")
    assert penalty.factor == pytest.approx(0.10)
    assert breakdown.score == pytest.approx(breakdown.base_score * 0.9)


def test_classic_rug_raise_then_revert_next_epoch() -> None:
    state, out = run([poll(100, 5), poll(101, 5, 0), poll(101, 10, 1), poll(101, 10, 3), poll(102, 5, 0)])
    assert kinds(out) == ["hike", "rug"]  # the revert is reported as the rug, not as a decrease
    rug = out[-1].events[-1]
    assert (rug.epoch, rug.old_commission, rug.new_commission) == (101, 5, 10)
    # p0 = min(0.8, 0.3 + 2 * 0.05) = 0.4, one epoch of decay with half-life 10
    penalty = next(p for p in out[-1].penalties if p.kind == "rug")
    assert penalty.factor == pytest.approx(0.4 * 2 ** (-1 / 10))
    assert penalty.since_epoch == 101
    assert penalty.expires_epoch == 101 + int(10 * 5.321928) + 1  # log2(0.4 / 0.01) = 5.3219
    assert state.rugs == [[101, 5]]


def test_boundary_rug_seen_only_in_the_applied_commission() -> None:
    # Polls never see the raise; getInflationReward says 10% was applied for epoch 101.
    reward = {"applied_commission": 10, "applied_commission_epoch": 101}
    _, out = run([poll(100, 5), poll(101, 5, 0), poll(101, 5, 3), poll(102, 5, 0, **reward)])
    assert kinds(out) == ["rug"]
    rug = out[-1].events[0]
    assert (rug.epoch, rug.old_commission, rug.new_commission, rug.applied_commission) == (101, 5, 10, 10)


def test_sustained_hike_is_not_a_rug_but_lowers_the_commission_component() -> None:
    polls = [poll(100, 5), poll(101, 5, 0), poll(101, 10, 1)] + [poll(e, 10) for e in range(102, 106)]
    state, out = run(polls)
    assert kinds(out) == ["hike"]
    assert state.rugs == []
    assert out[-1].component("commission").measurement.score == 0.0
    assert "rug" not in out[-1].penalty_kinds()


def test_late_revert_after_the_window_is_not_a_rug() -> None:
    polls = [poll(100, 5), poll(101, 10, 0)] + [poll(e, 10) for e in (102, 103)] + [poll(104, 5)]
    state, out = run(polls)
    assert kinds(out) == ["hike", "decrease"]
    assert state.rugs == []


def test_small_raise_reverted_is_a_change_not_a_rug() -> None:
    state, out = run([poll(100, 5), poll(101, 6, 0), poll(102, 5, 0)])
    assert kinds(out) == ["change", "decrease"]
    assert state.rugs == []


def test_rug_penalty_decays_and_expires() -> None:
    assert rug_factor(5, 10, CFG) == pytest.approx(0.2)  # 0.4 halved after one half-life
    assert rug_factor(50, 0, CFG) == CFG.rug_max  # 0.3 + 2 * 0.5 = 1.3, capped at 0.8
    expires = rug_expiry_epoch(101, 5, CFG)
    assert rug_factor(5, expires - 101, CFG) < CFG.rug_expiry_factor <= rug_factor(5, expires - 102, CFG)
    state, _ = run([poll(100, 5), poll(101, 10, 0), poll(102, 5, 0)])
    _, later = update(state, poll(expires, 5), make_context(epoch=expires))
    assert "rug" not in later.penalty_kinds()


def test_repeat_rugger_is_capped_at_twenty_for_good() -> None:
    polls = [poll(100, 5), poll(101, 10, 0), poll(102, 5, 0), poll(110, 5), poll(111, 10, 0), poll(112, 5, 0)]
    state, out = run(polls)
    assert kinds(out).count("rug") == 2
    assert state.repeat_offender_since == 112
    cap = next(p for p in out[-1].penalties if p.kind == "repeat_rugger")
    assert cap.cap == 20.0 and cap.expires_epoch is None
    assert out[-1].score <= 20.0
    # Long after both rugs expired, the cap stays.
    _, much_later = update(state, poll(400, 0), make_context(epoch=400))
    assert much_later.score <= 20.0 and "rug" not in much_later.penalty_kinds()


def test_replaying_the_revealing_record_does_not_duplicate_the_rug() -> None:
    polls = [poll(100, 5), poll(101, 10, 0), poll(102, 5, 0)]
    state, _ = run(polls)
    again, breakdown = update(state, polls[-1], make_context(epoch=102))
    assert breakdown.events == () and not breakdown.applied
    assert again.rugs == [[101, 5]]


def test_commission_event_dicts_have_the_public_keys() -> None:
    _, out = run([poll(100, 5), poll(101, 10, 0)])
    event = out[-1].to_score_event(poll(101, 10, 0)).events[0]
    assert event == {
        "vote_pubkey": "Vote111",
        "epoch": 101,
        "kind": "hike",
        "old_commission": 5,
        "new_commission": 10,
        "applied_commission": None,
    }


def test_penalties_compose_multiplicatively() -> None:
    rec = replace(make_record(delinquent=True), authorized_withdrawer="Node111")
    _, breakdown = update(None, rec, make_context())
    assert breakdown.score == pytest.approx(breakdown.base_score * 0.5 * 0.9)
