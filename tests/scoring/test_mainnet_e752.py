"""The model on the real mainnet epoch-752 getVoteAccounts snapshot (1,351 vote accounts)."""

from __future__ import annotations

import statistics

import pytest

from stream_app.records import ClusterContext, ValidatorRecord
from stream_app.scoring import ScoreBreakdown, build_cluster_context, update
from stream_app.scoring import config as names
from tests.scoring.mainnet import EPOCH, OBSERVED_AT, SLOTS_IN_EPOCH, load_e752

Scored = list[tuple[ValidatorRecord, ScoreBreakdown]]


@pytest.fixture(scope="module")
def snapshot() -> tuple[ClusterContext, Scored]:
    records, tip = load_e752()
    ctx = build_cluster_context(
        "e752", EPOCH, tip, tip - EPOCH * SLOTS_IN_EPOCH, SLOTS_IN_EPOCH, records, observed_at=OBSERVED_AT
    )
    return ctx, [(r, update(None, r, ctx)[1]) for r in records]


def test_the_snapshot_is_what_the_readme_says(snapshot: tuple[ClusterContext, Scored]) -> None:
    ctx, scored = snapshot
    assert len(scored) == 1_351
    assert sum(r.delinquent for r, _ in scored) == 26
    assert 379e6 < ctx.total_active_stake / 1e9 < 379.1e6
    assert sorted(ctx.reference_credits) == ["748", "749", "750", "751", "752"]
    # Finished TVC epochs: the median voter earns close to the 6.912 M maximum.
    assert all(6_800_000 < ctx.reference_credits[str(e)] <= 6_912_000 for e in range(748, 752))


def test_every_score_is_explained_and_bounded(snapshot: tuple[ClusterContext, Scored]) -> None:
    _, scored = snapshot
    for _, b in scored:
        assert 0 <= b.score <= 100 and 0 <= b.confidence <= 1
        assert abs(sum(c.contribution for c in b.components) - b.base_score) < 1e-6


def test_all_delinquent_validators_are_penalised(snapshot: tuple[ClusterContext, Scored]) -> None:
    _, scored = snapshot
    current = statistics.median(b.score for r, b in scored if not r.delinquent)
    for r, b in scored:
        if r.delinquent:
            assert "delinquent" in b.penalty_kinds()
            assert b.score <= 0.5 * b.base_score + 1e-9
            assert b.score < current
        else:
            assert "delinquent" not in b.penalty_kinds()


def test_hundred_percent_commission_scores_zero(snapshot: tuple[ClusterContext, Scored]) -> None:
    _, scored = snapshot
    private = [(r, b) for r, b in scored if r.commission == 100]
    assert len(private) == 70
    assert all(b.score == 0.0 and "private" in b.penalty_kinds() for _, b in private)
    assert all(b.score > 0 for r, b in scored if r.commission < 100)


def test_superminority_members_are_marked(snapshot: tuple[ClusterContext, Scored]) -> None:
    ctx, scored = snapshot
    members = sorted((r.activated_stake for r, b in scored if b.superminority), reverse=True)
    third = ctx.total_active_stake / 3
    assert sum(members) > third >= sum(members[:-1])  # the fewest largest validators holding > 1/3
    for r, b in scored:
        assert b.superminority == (r.activated_stake >= ctx.superminority_min_stake)
        if b.superminority:
            assert b.component(names.STAKE_CONCENTRATION).measurement.score == 0.0
            assert "superminority" in b.penalty_kinds()


def test_poor_voters_get_a_lower_vote_component(snapshot: tuple[ClusterContext, Scored]) -> None:
    _, scored = snapshot
    votes = [b.component(names.VOTE).measurement for _, b in scored]
    by_ratio = sorted((m.raw, m.score) for m in votes if isinstance(m.raw, float))
    tenth = len(by_ratio) // 10
    worst = statistics.mean(s for _, s in by_ratio[:tenth])
    upper_half = statistics.mean(s for _, s in by_ratio[len(by_ratio) // 2 :])
    assert worst < upper_half - 0.05, (worst, upper_half)
    assert upper_half > 0.95  # at or above the median voter: near full marks
    assert min(m.score for m in votes) < 0.6 and max(m.score for m in votes) == 1.0
