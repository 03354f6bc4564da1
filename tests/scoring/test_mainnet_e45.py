"""The model on the 2020 epoch-45 snapshot: pre-TVC credits and full epochCredits history with gaps."""

from __future__ import annotations

from stream_app.scoring import build_cluster_context, update
from stream_app.scoring import config as names
from stream_app.scoring.config import DEFAULT_CONFIG
from tests.scoring.mainnet import OBSERVED_AT, load_e45


def test_old_rpc_shape_scores_cleanly() -> None:
    records, info = load_e45()
    ctx = build_cluster_context(
        "e45", info["epoch"], info["absoluteSlot"], info["slotIndex"], info["slotsInEpoch"], records, OBSERVED_AT
    )
    assert len(records) == 98 and max(len(r.epoch_credits) for r in records) == 46
    # Pre-TVC: one credit per rooted slot, so the reference is below the 432,000 slots of an epoch.
    assert all(0 < ctx.reference_credits[str(e)] <= 432_000 for e in range(41, 45))
    for record in records:
        state, b = update(None, record, ctx)
        assert 0 <= b.score <= 100
        # Entries before the context's window (41..45) are skipped, zero-credit gaps still count, and
        # every account with history ends committed up to the last finished epoch.
        if any(e < info["epoch"] for e, _, _ in record.epoch_credits):
            assert state.vote_epoch == info["epoch"] - 1
            assert state.vote_n <= 4 + DEFAULT_CONFIG.max_gap_epochs
        assert ("delinquent" in b.penalty_kinds()) == record.delinquent
        assert (b.score == 0) == (record.commission == 100)
        # Lifetime credits in reference epochs never exceed the epochs the cluster has existed.
        assert b.component(names.TRACK_RECORD).measurement.raw <= info["epoch"] + 1
