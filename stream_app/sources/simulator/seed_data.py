"""The real mainnet snapshot the simulator starts from, packaged with the code.

`data/mainnet_e752.json.gz` is derived (not copied by hand) from the raw responses in
`shared/data/solana-mainnet/`: the e752 getVoteAccounts answer (1,325 current + 26 delinquent) and the
validator-info entries of the 2021 Config-program dump, reduced to the fields the simulator uses. Regenerate:

    python -m stream_app.sources.simulator.seed_data /path/to/shared/data/solana-mainnet
"""

from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from stream_app.sources.parse import VoteAccount, parse_validator_infos, parse_vote_accounts

SEED_FILE = Path(__file__).with_name("data") / "mainnet_e752.json.gz"
VOTE_ACCOUNTS_FILE = "laine_getVoteAccounts_mainnet_e752_2025-03-07.json"
CONFIG_FILE = "validatorsapp_getProgramAccounts_Config_jsonParsed_mainnet_2021-11-02.json"


@dataclass(frozen=True, slots=True)
class SeedInfo:
    identity: str
    name: str | None
    website: str | None
    details: str | None
    icon_url: str | None
    keybase_username: str | None


@dataclass(frozen=True, slots=True)
class Seed:
    epoch: int
    tip_slot: int
    vote_accounts: tuple[VoteAccount, ...]
    infos: tuple[SeedInfo, ...]


def build(shared_dir: Path) -> bytes:
    """Compact, gzipped seed from the raw mainnet responses."""
    votes = parse_vote_accounts(orjson.loads((shared_dir / VOTE_ACCOUNTS_FILE).read_bytes())["result"])
    infos, _ = parse_validator_infos(orjson.loads((shared_dir / CONFIG_FILE).read_bytes())["result"])
    tip = max(a.last_vote for a in votes.current)
    doc = {
        "epoch": max(a.epoch_credits[-1][0] for a in votes.current if a.epoch_credits),
        "tip_slot": tip,
        "vote_accounts": [
            [a.vote_pubkey, a.node_pubkey, a.commission, a.activated_stake, [list(e) for e in a.epoch_credits],
             a.last_vote, a.root_slot, a.delinquent]
            for a in votes.accounts
        ],
        "infos": [[i.identity, i.name, i.website, i.details, i.icon_url, i.keybase_username] for i in infos],
    }
    return gzip.compress(orjson.dumps(doc), mtime=0)


@lru_cache(maxsize=1)
def load_seed() -> Seed:
    doc: dict[str, Any] = orjson.loads(gzip.decompress(SEED_FILE.read_bytes()))
    accounts = tuple(
        VoteAccount(vote, node, commission, stake, tuple(tuple(e) for e in credits), last_vote, root, True,
                    delinquent)
        for vote, node, commission, stake, credits, last_vote, root, delinquent in doc["vote_accounts"]
    )
    infos = tuple(SeedInfo(*row) for row in doc["infos"])
    return Seed(doc["epoch"], doc["tip_slot"], accounts, infos)


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[4] / "shared/data/solana-mainnet"
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    SEED_FILE.parent.mkdir(exist_ok=True)
    SEED_FILE.write_bytes(build(source))
    print(f"wrote {SEED_FILE} ({SEED_FILE.stat().st_size} bytes)")
