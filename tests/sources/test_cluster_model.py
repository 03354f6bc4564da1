"""The simulator's pure cluster model: determinism, Solana's rules (credits, delinquency), evolution."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.sources.parse import parse_vote_accounts
from stream_app.sources.simulator.cluster import CREDITS_PER_SLOT, DELINQUENT_DISTANCE, SLOTS_PER_EPOCH, SimCluster


def test_same_seed_same_cluster_other_seed_other_cluster() -> None:
    a, b, c = SimCluster(seed=1, validators=300), SimCluster(seed=1, validators=300), SimCluster(seed=2, validators=300)
    for cluster in (a, b, c):
        cluster.advance_to(cluster.slot + 2 * SLOTS_PER_EPOCH + 12_345)
    assert a.rpc_vote_accounts() == b.rpc_vote_accounts()
    assert a.rpc_block_production() == b.rpc_block_production()
    assert a.rugs == b.rugs
    assert a.rpc_vote_accounts() != c.rpc_vote_accounts()


def test_starts_as_the_real_snapshot() -> None:
    votes = parse_vote_accounts(SimCluster().rpc_vote_accounts())
    assert (len(votes.current), len(votes.delinquent), votes.failures) == (1325, 26, [])
    assert round(sum(a.activated_stake for a in votes.accounts) / 1e15, 2) == 379.05


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 300_000), min_size=1, max_size=6))
def test_rules_hold_at_any_time(steps: list[int]) -> None:
    cluster = SimCluster(seed=3, validators=150)
    previous: dict[str, int] = {}
    for step in steps:
        cluster.advance_to(cluster.slot + step)
        votes = parse_vote_accounts(cluster.rpc_vote_accounts())
        assert votes.failures == []
        for account in votes.accounts:
            # delinquent exactly when lastVote is 128+ slots behind the tip
            assert account.delinquent == (cluster.slot - account.last_vote >= DELINQUENT_DISTANCE)
            for epoch, credits, prev in account.epoch_credits:
                assert credits - prev <= CREDITS_PER_SLOT * SLOTS_PER_EPOCH
                if epoch == cluster.epoch:
                    assert credits - prev <= CREDITS_PER_SLOT * cluster.slot_index
            total = account.epoch_credits[-1][1] if account.epoch_credits else 0
            assert total >= previous.get(account.vote_pubkey, 0)  # cumulative credits never go down
            previous[account.vote_pubkey] = total


def test_a_cluster_evolves_over_epochs() -> None:
    cluster = SimCluster(seed=11, validators=1_000)
    start_count = len(cluster.validators)
    delinquent_seen: set[str] = set()
    recovered: set[str] = set()
    for _ in range(8 * 8):
        cluster.advance_to(cluster.slot + SLOTS_PER_EPOCH // 8)
        votes = cluster.rpc_vote_accounts()
        now_delinquent = {e["votePubkey"] for e in votes["delinquent"]}
        recovered |= delinquent_seen - now_delinquent
        delinquent_seen |= now_delinquent
    assert cluster.epoch == 760
    assert len(cluster.validators) > start_count  # newcomers joined
    assert recovered  # some delinquent validators came back
    assert cluster.rugs and all(new > old for _, _, old, new in cluster.rugs)
    # every rug shows in the rewards of its epoch, and the commission was lowered after the boundary
    for epoch, vote, old, new in cluster.rugs:
        if epoch < cluster.epoch - 1:
            reward = cluster.rpc_inflation_reward([vote], epoch)[0]
            assert reward is None or reward["commission"] == new
            assert cluster._by_vote[vote].commission_at(cluster.slot_index) <= max(old, 10) or any(
                e2 > epoch for e2, v2, _, _ in cluster.rugs if v2 == vote)
    versions = {v.version for v in cluster.validators}
    assert len(versions) > 1


def test_inflation_reward_refuses_unfinished_epochs() -> None:
    cluster = SimCluster(seed=5, validators=50)
    vote = cluster.validators[0].vote
    assert cluster.rpc_inflation_reward([vote], cluster.epoch - 1)[0] is not None
    for epoch in (cluster.epoch, cluster.epoch + 3, 10):
        try:
            cluster.rpc_inflation_reward([vote], epoch)
        except ValueError as exc:
            assert str(epoch) in str(exc)
        else:
            raise AssertionError(f"epoch {epoch} answered")
