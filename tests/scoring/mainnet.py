"""A tiny local reader of the saved epoch-752 getVoteAccounts response, for scoring tests and the bench.

The production parser lives in stream_app/sources; this one only builds what scoring needs.
"""

from __future__ import annotations

import json
from pathlib import Path

from stream_app.records import U64_MAX, ValidatorRecord

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "solana-mainnet"
E752_FILE = DATA / "laine_getVoteAccounts_mainnet_e752_2025-03-07.json"
EPOCH = 752
SLOTS_IN_EPOCH = 432_000
OBSERVED_AT = 1_741_305_600.0  # 2025-03-07


E45_FILE = DATA / "validatorsapp_getVoteAccounts_mainnet_e45_2020-06-28.json"
E45_EPOCH_INFO = DATA / "validatorsapp_getEpochInfo_mainnet_e45_2020-06-28.json"


def load_vote_accounts(
    path: Path, epoch: int, run_id: str, tip: int | None = None
) -> tuple[list[ValidatorRecord], int]:
    """(records, tip slot) from a saved getVoteAccounts response; the tip defaults to the highest lastVote."""
    result = json.loads(path.read_text())["result"]
    accounts = [(a, False) for a in result["current"]] + [(a, True) for a in result["delinquent"]]
    if tip is None:
        tip = max(a["lastVote"] for a, _ in accounts)
    records = [
        ValidatorRecord(
            run_id=run_id,
            vote_pubkey=a["votePubkey"],
            identity_pubkey=a["nodePubkey"],
            epoch=epoch,
            slot=tip,
            observed_at=OBSERVED_AT,
            commission=int(a["commission"]),
            activated_stake=int(a["activatedStake"]),
            epoch_credits=tuple((int(e), int(c), int(p)) for e, c, p in a["epochCredits"] if U64_MAX not in (e, c, p)),
            last_vote=int(a["lastVote"]),
            root_slot=a.get("rootSlot"),
            delinquent=delinquent,
            epoch_vote_account=bool(a.get("epochVoteAccount", True)),
        )
        for a, delinquent in accounts
    ]
    return records, tip


def load_e752(run_id: str = "e752") -> tuple[list[ValidatorRecord], int]:
    return load_vote_accounts(E752_FILE, EPOCH, run_id)


def load_e45(run_id: str = "e45") -> tuple[list[ValidatorRecord], dict[str, int]]:
    """The 2020 snapshot (pre-TVC, full epochCredits history with gaps) and its getEpochInfo."""
    info = json.loads(E45_EPOCH_INFO.read_text())["result"]
    records, _ = load_vote_accounts(E45_FILE, info["epoch"], run_id, tip=info["absoluteSlot"])
    return records, info
