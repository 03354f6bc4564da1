"""Worked examples, one or more per component; every expected number is derived by hand in the test."""

from __future__ import annotations

import math

import pytest

from stream_app.scoring import components as comp
from stream_app.scoring import config as names
from stream_app.scoring.config import DEFAULT_CONFIG as CFG
from stream_app.scoring.model import update
from stream_app.scoring.state import ValidatorState
from tests.scoring.conftest import EPOCH, REFERENCE, SLOTS, credits_history, make_context, make_record

SOL = 10**9


def test_vote_subscore_is_linear_between_floor_and_full_credit() -> None:
    # clamp((r - 0.90) / 0.095): 0.95 -> 0.05 / 0.095 = 0.526316
    assert comp.vote_subscore(0.95, CFG) == pytest.approx(0.05 / 0.095)
    assert comp.vote_subscore(0.90, CFG) == 0.0
    assert comp.vote_subscore(0.80, CFG) == 0.0
    assert comp.vote_subscore(0.995, CFG) == pytest.approx(1.0)
    assert comp.vote_subscore(1.02, CFG) == 1.0


def test_one_finished_epoch_is_smoothed_toward_the_prior() -> None:
    # One finished epoch at 95% of the reference, nothing of the current epoch yet (slot_index 0).
    rec = make_record(epoch_credits=credits_history([int(REFERENCE * 0.95)], EPOCH - 1))
    ctx = make_context(slot_index=0)
    _, breakdown = update(None, rec, ctx)
    vote = breakdown.component(names.VOTE).measurement
    x = 0.05 / 0.095
    # n = 1 epoch, kappa = 3, prior 0.9 (config default, the context gives none): (x + 2.7) / 4
    assert vote.n == 1
    assert vote.score == pytest.approx((x + 3 * 0.9) / 4)
    assert vote.raw == pytest.approx(0.95)
    assert vote.reference == REFERENCE


def test_vote_ewma_over_finished_epochs() -> None:
    # Epoch 98 at 100% (x=1), epoch 99 at 80% (x=0): m = 1 + alpha * (0 - 1), alpha = 1 - 2^(-1/8)
    rec = make_record(epoch_credits=credits_history([REFERENCE, int(REFERENCE * 0.8)], EPOCH - 1))
    state, _ = update(None, rec, make_context(slot_index=0))
    alpha = 1 - 2 ** (-1 / 8)
    assert state.vote_n == 2
    assert state.vote_ewma == pytest.approx(1 - alpha)
    assert state.vote_epoch == EPOCH - 1
    assert state.credited_epochs == 2


def test_in_epoch_progress_is_provisional_and_never_committed() -> None:
    # Half-way through the epoch, the validator earned 0.9 * reference-so-far: x_now = 0, weight 0.5.
    history = credits_history([REFERENCE] * 4 + [int(REFERENCE // 2 * 0.9)], EPOCH)
    state, breakdown = update(None, make_record(epoch_credits=history), make_context())
    alpha = 1 - 2 ** (-1 / 8)
    provisional = 1.0 + alpha * 0.5 * (0.0 - 1.0)
    n = 4 + 0.5
    vote = breakdown.component(names.VOTE).measurement
    assert vote.score == pytest.approx((n * provisional + 3 * 0.9) / (n + 3))
    assert state.vote_ewma == 1.0  # the current epoch did not touch the committed average
    assert state.vote_epoch == EPOCH - 1


def test_missing_entries_inside_the_window_count_as_zero_credits() -> None:
    # Entries for 96 and 98 only: 97 had no credits (a gap) and 99 too (no entry after 98).
    history = ((96, 2 * REFERENCE, REFERENCE), (98, 3 * REFERENCE, 2 * REFERENCE))
    state, _ = update(None, make_record(epoch_credits=history), make_context())
    alpha = 1 - 2 ** (-1 / 8)
    m = 1.0
    for x in (0.0, 1.0, 0.0):  # 97, 98, 99
        m += alpha * (x - m)
    assert state.vote_n == 4
    assert state.vote_ewma == pytest.approx(m)
    assert state.credited_epochs == 2


def test_availability_two_polls_up_then_delinquent_a_day_later() -> None:
    tau = 30 * 86_400
    first = make_record()
    second = make_record(slot=first.slot + 216_000, observed_at=first.observed_at + 86_400, delinquent=True)
    state, _ = update(None, first, make_context())
    state, breakdown = update(state, second, make_context())
    w0 = 1 - math.exp(-3_600 / tau)  # the first poll counts for one hour
    keep = math.exp(-86_400 / tau)
    up = w0 * keep
    seen = w0 * keep + (1 - keep)
    assert state.avail_up == pytest.approx(up)
    assert state.avail_seen == pytest.approx(seen)
    avail = breakdown.component(names.AVAILABILITY).measurement
    assert avail.raw == pytest.approx(up / seen, abs=1e-6)
    n = seen * tau / (SLOTS * 0.4)
    assert avail.score == pytest.approx((n * 0.0 + 3 * 0.95) / (n + 3))  # U < 97% -> sub-score 0
    assert breakdown.uptime == pytest.approx(100 * up / seen)


def test_block_production_smooths_toward_the_cluster_skip_rate() -> None:
    # 100 leader slots, 10 skipped, cluster 5%: (10 + 20 * 0.05) / 120 = 0.091667; 1 - 0.041667/0.10
    rec = make_record(leader_slots=100, blocks_produced=90)
    _, breakdown = update(None, rec, make_context(cluster_skip_rate=0.05))
    block = breakdown.component(names.BLOCK_PRODUCTION).measurement
    assert block.raw == pytest.approx(11 / 120, abs=1e-6)
    assert block.score == pytest.approx(1 - (11 / 120 - 0.05) / 0.10)


def test_block_production_small_sample_is_not_a_cliff() -> None:
    # 1 skip in 4 leader slots is a raw 25% skip; smoothed: (1 + 1) / 24 = 8.33% -> sub-score 0.6667
    _, breakdown = update(None, make_record(leader_slots=4, blocks_produced=3), make_context(cluster_skip_rate=0.05))
    block = breakdown.component(names.BLOCK_PRODUCTION).measurement
    assert block.score == pytest.approx(1 - (2 / 24 - 0.05) / 0.10)
    assert block.certainty == pytest.approx(4 / 24)


def test_block_production_folds_finished_epochs_with_decay() -> None:
    first = make_record(leader_slots=40, blocks_produced=36)
    nxt = make_record(epoch=EPOCH + 1, leader_slots=8, blocks_produced=8)
    state, _ = update(None, first, make_context())
    state, _ = update(state, nxt, make_context(epoch=EPOCH + 1))
    assert state.leader_sum == pytest.approx(40)  # finished last epoch, no decay yet
    assert state.skipped_sum == pytest.approx(4)
    assert (state.epoch_leader_slots, state.epoch_skipped) == (8, 0)
    d = 2 ** (-1 / 8)
    later = make_record(epoch=EPOCH + 3, leader_slots=0, blocks_produced=0)
    state, _ = update(state, later, make_context(epoch=EPOCH + 3))
    assert state.leader_sum == pytest.approx(40 * d**2 + 8 * d)


def test_unknown_block_production_moves_its_weight() -> None:
    _, breakdown = update(None, make_record(), make_context())
    block = breakdown.component(names.BLOCK_PRODUCTION)
    assert block.weight == 0 and not block.measurement.known
    assert sum(c.weight for c in breakdown.components) == pytest.approx(1.0)


def test_commission_subscore_inflation_and_mev() -> None:
    assert comp.commission_subscore(5, None, CFG) == pytest.approx(0.5)
    assert comp.commission_subscore(0, None, CFG) == 1.0
    assert comp.commission_subscore(12, None, CFG) == 0.0
    # 0.75 * (1 - 5/10) + 0.25 * (1 - 800/1000) = 0.375 + 0.05
    assert comp.commission_subscore(5, 800, CFG) == pytest.approx(0.425)


def test_commission_uses_the_worst_value_of_the_window() -> None:
    state, _ = update(None, make_record(epoch=EPOCH - 5, commission=8), make_context(epoch=EPOCH - 5))
    _, breakdown = update(state, make_record(commission=5), make_context())
    measured = breakdown.component(names.COMMISSION).measurement
    assert measured.raw == 8 and measured.score == pytest.approx(0.2)
    # Eleven epochs later the old 8% has left the 10-epoch window.
    later = make_record(epoch=EPOCH + 6, commission=5)
    state, _ = update(state, make_record(commission=5), make_context())
    _, breakdown = update(state, later, make_context(epoch=EPOCH + 6))
    assert breakdown.component(names.COMMISSION).measurement.raw == 5


def test_stake_concentration_is_linear_below_the_superminority() -> None:
    _, breakdown = update(None, make_record(activated_stake=2_500_000 * SOL), make_context())
    stake = breakdown.component(names.STAKE_CONCENTRATION).measurement
    assert stake.score == pytest.approx(1 - 2.5 / 10)
    assert not breakdown.superminority


def test_superminority_member_scores_zero_and_is_marked() -> None:
    _, breakdown = update(None, make_record(activated_stake=10_000_000 * SOL), make_context())
    assert breakdown.component(names.STAKE_CONCENTRATION).measurement.score == 0.0
    assert breakdown.superminority
    marker = [p for p in breakdown.penalties if p.kind == "superminority"]
    assert marker and marker[0].factor == 0.0


def test_infrastructure_concentration_by_ip_prefix() -> None:
    ctx = make_context(infra_stake_share={"65.21.0.0/16": 0.04})
    _, breakdown = update(None, make_record(gossip_ip="65.21.8.9"), ctx)
    infra = breakdown.component(names.INFRA_CONCENTRATION)
    assert infra.measurement.score == pytest.approx(1 - 0.04 / 0.10)
    assert infra.weight == pytest.approx(0.05 / (1 - 0.10 - 0.05 - 0.05))  # block, software, info unknown


def test_unknown_infrastructure_weight_goes_to_stake() -> None:
    _, breakdown = update(None, make_record(), make_context())
    known_total = 1 - 0.10 - 0.05 - 0.05  # block production, software, transparency unknown
    assert breakdown.component(names.INFRA_CONCENTRATION).weight == 0.0
    assert breakdown.component(names.STAKE_CONCENTRATION).weight == pytest.approx((0.07 + 0.05) / known_total)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("2.1.14", 1.0), ("2.2.0", 1.0), ("2.1.13", 0.5), ("2.0.20", 0.0), ("0.403.20113", 1.0), ("0.402.1", 0.0)],
)
def test_software_version_against_the_66_percent_version(version: str, expected: float) -> None:
    ctx = make_context(consensus_versions={"agave": "2.1.14", "firedancer": "0.403.20113"})
    _, breakdown = update(None, make_record(version=version), ctx)
    assert breakdown.component(names.SOFTWARE).measurement.score == expected


def test_transparency_info_and_withdrawer() -> None:
    rec = make_record(name="Acme", website="https://acme.example", authorized_withdrawer="ColdKey1")
    _, breakdown = update(None, rec, make_context())
    # 0.6 * 2/4 published + 0.4 * (withdrawer is not the identity)
    assert breakdown.component(names.TRANSPARENCY).measurement.score == pytest.approx(0.7)


def test_track_record_uses_the_larger_of_counted_epochs_and_lifetime_credits() -> None:
    assert comp.age_subscore(4, CFG) == pytest.approx(math.log(5) / math.log(51))
    assert comp.age_subscore(50, CFG) == 1.0
    # Lifetime credits of 20 reference epochs before the last finished one: age >= 24 epochs.
    rec = make_record(epoch_credits=credits_history([REFERENCE] * 4, EPOCH - 1, start=20 * REFERENCE))
    _, breakdown = update(None, rec, make_context())
    track = breakdown.component(names.TRACK_RECORD).measurement
    assert track.raw == pytest.approx(24)
    assert track.score == pytest.approx(math.log(25) / math.log(51))


def test_contributions_sum_to_the_base_score() -> None:
    _, breakdown = update(ValidatorState(), make_record(), make_context())
    assert sum(c.contribution for c in breakdown.components) == pytest.approx(breakdown.base_score)


@pytest.mark.parametrize(
    ("ip", "bits", "expected"),
    [
        ("65.21.8.9", 16, "65.21.0.0/16"),
        ("65.21.8.9:8001", 16, "65.21.0.0/16"),
        ("1.2.3.4", 24, "1.2.3.0/24"),
        ("::1", 16, None),
        ("300.1.1.1", 16, None),
        ("1.2.3", 16, None),
        (None, 16, None),
    ],
)
def test_ip_prefix(ip: str | None, bits: int, expected: str | None) -> None:
    assert comp.ip_prefix(ip, bits) == expected


def test_long_silent_validator_gets_zero_epochs_not_the_prior() -> None:
    # Last entries 80..84, far older than the context's references (96..100): those entries cannot be
    # compared and are skipped; the epochs since without any entry earned nothing (capped at 10).
    history = credits_history([REFERENCE] * 5, 84)
    state, breakdown = update(None, make_record(epoch_credits=history, delinquent=True), make_context())
    assert state.vote_n == 10 and state.vote_ewma == 0.0 and state.vote_epoch == EPOCH - 1
    vote = breakdown.component(names.VOTE).measurement
    assert vote.score == pytest.approx((10 * 0.0 + 0.5 * 0.0 + 3 * 0.9) / (10.5 + 3))  # current epoch: 0 too


def test_an_epoch_newer_than_the_context_waits() -> None:
    ctx = make_context(reference_credits={str(e): REFERENCE for e in range(EPOCH - 4, EPOCH - 1)})
    state, _ = update(None, make_record(), ctx)
    assert state.vote_epoch == EPOCH - 2 and state.vote_n == 3  # 99 is not in the context yet
    state, _ = update(state, make_record(slot=make_record().slot + 1), make_context())
    assert state.vote_epoch == EPOCH - 1 and state.vote_n == 4


def test_vote_component_shows_the_tvc_share_of_the_last_finished_epoch() -> None:
    _, breakdown = update(None, make_record(), make_context())
    # 6.8 M credits of 16 x 432,000 = 6.912 M possible
    assert breakdown.component(names.VOTE).to_dict()["tvc_share"] == pytest.approx(REFERENCE / 6_912_000, abs=1e-6)
