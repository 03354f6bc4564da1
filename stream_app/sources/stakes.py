"""A wallet's stake accounts: Stake-program getProgramAccounts filtered by staker (offset 12) and withdrawer (44).

    accounts = await fetch_wallet_stake_accounts(rpc, wallet_pubkey)

Both lists are fetched (a wallet may be only the staker, or only the withdrawer, of an account) and merged by
stake pubkey. The wallet is validated with solders before any call (`RecordError` on a bad pubkey). A stake
account entry that does not parse is returned in `failures`, never guessed. `state` (activating, active,
deactivating, inactive) is relative to the current epoch, read with getEpochInfo unless given.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from stream_app.sources.parse import (
    STAKE_PROGRAM_ID,
    ParseFailure,
    StakeAccount,
    parse_epoch_info,
    parse_stake_accounts,
    pubkey,
)
from stream_app.sources.rpc import RpcClient

STAKER_OFFSET = 12  # after the 4-byte state enum and the 8-byte rent-exempt reserve
WITHDRAWER_OFFSET = 44
STAKE_ACCOUNT_SIZE = 200


@dataclass(frozen=True)
class WalletStakes:
    wallet: str
    epoch: int
    accounts: list[StakeAccount]
    failures: list[ParseFailure]

    @property
    def total_delegated(self) -> int:
        return sum(a.delegated_stake for a in self.accounts)


def _filters(offset: int, wallet: str) -> list[object]:
    return [STAKE_PROGRAM_ID, {"encoding": "jsonParsed", "commitment": "confirmed", "filters": [
        {"dataSize": STAKE_ACCOUNT_SIZE}, {"memcmp": {"offset": offset, "bytes": wallet}}]}]


async def fetch_wallet_stake_accounts(rpc: RpcClient, wallet: str, *, epoch: int | None = None) -> WalletStakes:
    owner = pubkey(wallet, "wallet")
    if epoch is None:
        epoch = parse_epoch_info(await rpc.call("getEpochInfo")).epoch
    as_staker, as_withdrawer = await asyncio.gather(
        rpc.call("getProgramAccounts", _filters(STAKER_OFFSET, owner)),
        rpc.call("getProgramAccounts", _filters(WITHDRAWER_OFFSET, owner)),
    )
    merged: dict[str, StakeAccount] = {}
    failures: list[ParseFailure] = []
    for result in (as_staker, as_withdrawer):
        accounts, bad = parse_stake_accounts(result, epoch)
        failures.extend(f for f in bad if f not in failures)
        for account in accounts:
            if owner not in (account.staker, account.withdrawer):
                failures.append(ParseFailure("stake_account", account.stake_pubkey,
                                             "returned for a filter it does not match"))
                continue
            merged[account.stake_pubkey] = account
    return WalletStakes(owner, epoch, sorted(merged.values(), key=lambda a: a.stake_pubkey), failures)
