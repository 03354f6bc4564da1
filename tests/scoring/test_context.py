"""build_cluster_context: worked examples of each cluster reference."""

from __future__ import annotations

import pytest

from stream_app.scoring import build_cluster_context
from stream_app.scoring import config as names
from stream_app.scoring.context import superminority_min_stake, weighted_median
from tests.scoring.conftest import EPOCH, SLOTS, credits_history, make_record

SOL = 10**9


def test_weighted_median_is_the_value_at_half_the_weight() -> None:
    assert weighted_median([(1, 1), (2, 1), (3, 1)]) == 2
    assert weighted_median([(1, 10), (2, 1), (3, 1)]) == 1
    assert weighted_median([(5, 0)]) is None


def test_superminority_threshold() -> None:
    # Total 100: 40 alone exceeds a third, so the superminority is {40} and its smallest stake is 40.
    assert superminority_min_stake([40, 30, 20, 10]) == 40
    # Total 100 of 10 x 10: four validators (40) are needed to exceed 33.3.
    assert superminority_min_stake([10] * 10) == 10
    assert superminority_min_stake([30, 30, 20, 20]) == 30  # 30 + 30 = 60 > 33.3 after the second
    assert superminority_min_stake([]) == 0


def test_context_from_records() -> None:
    recs = [
        make_record(
            vote_pubkey=f"V{i}",
            activated_stake=stake * SOL,
            epoch_credits=credits_history([earned, earned // 2], EPOCH),
            leader_slots=100,
            blocks_produced=100 - skipped,
            version=version,
            gossip_ip=ip,
            delinquent=delinquent,
        )
        for i, (stake, earned, skipped, version, ip, delinquent) in enumerate(
            [
                (500, 6_000_000, 10, "2.1.14", "65.21.1.1", False),
                (300, 6_500_000, 0, "2.1.13", "65.21.9.9", False),
                (200, 5_000_000, 20, "2.0.9", "10.0.0.1", True),
            ]
        )
    ]
    ctx = build_cluster_context("r", EPOCH, EPOCH * SLOTS + 7, 7, SLOTS, recs, observed_at=5.0)
    assert ctx.total_active_stake == 1_000 * SOL and ctx.validator_count == 3
    assert ctx.superminority_min_stake == 500 * SOL
    # Epoch 99 earned 6.0 M (500), 6.5 M (300), 5.0 M (200): sorted 5.0/200, 6.0/500 -> 700 >= 500.
    assert ctx.reference_credits[str(EPOCH - 1)] == 6_000_000
    # The epoch in progress ignores the delinquent account: 3.0 M (500) and 3.25 M (300) -> 3.0 M.
    assert ctx.reference_credits[str(EPOCH)] == 3_000_000
    assert ctx.cluster_skip_rate == pytest.approx((500 * 0.10 + 300 * 0.0 + 200 * 0.20) / 1_000)
    # Stake at >= version: 2.1.14 holds 50%, 2.1.13 brings 80% >= 66%.
    assert ctx.consensus_versions == {"agave": "2.1.13"}
    assert ctx.infra_stake_share == {"65.21.0.0/16": 0.8, "10.0.0.0/16": 0.2}
    # Median vote sub-score of the last finished epoch: ratios 1.0, 1.083, 0.833 -> median 1.0 -> 1.
    assert ctx.priors[names.VOTE] == 1.0
    assert ctx.priors[names.AVAILABILITY] == 1.0
