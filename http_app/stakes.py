"""What `write:stakes` is for: a signed-in wallet's stake accounts, refreshed from chain and judged.

    await refresh_wallet_stakes(pool, rpc, principal)   # Stake-program accounts the wallet stakes or withdraws
    await refresh_stake_accounts(app, principal)        # the same with the app's pool and RPC (GraphQL hook)
    await stake_overview(pool, principal)               # each account + validator score, recent rug, better picks

Users only ever see their own stake accounts; `user_id=` of someone else needs `read:users`.
A refresh removes the wallet's rows the chain no longer shows, unless some entries did not parse (then it keeps
them: only a complete answer may say an account is gone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from http_app.keys import DB_POOL, REDIS, SETTINGS
from http_app.principal import READ_USERS, WRITE_STAKES, Principal
from stream_app.rpc_fallback import read_fallback
from stream_app.sources.rpc import RpcClient
from stream_app.sources.stakes import WalletStakes, fetch_wallet_stake_accounts

RECENT_RUG_EPOCHS = 10  # a rug within this many epochs of the newest known epoch is "recent"
SUGGESTIONS = 3
_SUGGESTION_POOL = 50


class StakeAccessError(PermissionError):
    """The principal may not do this (not signed in with a wallet, or asking for another user's stakes)."""


@dataclass(frozen=True)
class StakeRefresh:
    wallet: str
    epoch: int
    accounts: int
    removed: int
    failures: int


def _wallet_user(principal: Principal) -> tuple[int, str]:
    if not principal.can(WRITE_STAKES):
        raise StakeAccessError("refreshing stake accounts needs the write:stakes permission")
    if principal.wallet_pubkey is None or principal.user_id is None or not principal.user_id.isdigit():
        raise StakeAccessError("refreshing stake accounts needs a wallet sign-in")
    return int(principal.user_id), principal.wallet_pubkey


async def refresh_wallet_stakes(pool: asyncpg.Pool, rpc: RpcClient, principal: Principal) -> StakeRefresh:
    user_id, wallet = _wallet_user(principal)
    stakes = await fetch_wallet_stake_accounts(rpc, wallet)
    async with pool.acquire() as conn, conn.transaction():
        await _upsert(conn, user_id, stakes)
        removed = 0
        if not stakes.failures:  # only a complete answer may say an account is gone
            # Closed, or no longer staked/withdrawn by this wallet: the row would only mislead.
            status = await conn.execute(
                """DELETE FROM stake_accounts
                   WHERE (user_id = $1 OR staker = $3 OR withdrawer = $3)
                     AND NOT (stake_pubkey = ANY($2::text[]))""",
                user_id, [a.stake_pubkey for a in stakes.accounts], wallet,
            )
            removed = int(status.split()[-1])
        await conn.execute(
            "INSERT INTO audit_log (action, actor_id, metadata) VALUES ('stakes.refresh', $1, $2)",
            str(user_id),
            {"wallet": wallet, "epoch": stakes.epoch, "accounts": len(stakes.accounts), "removed": removed,
             "failures": len(stakes.failures)},
        )
    return StakeRefresh(wallet, stakes.epoch, len(stakes.accounts), removed, len(stakes.failures))


async def _upsert(conn: asyncpg.Connection, user_id: int, stakes: WalletStakes) -> None:
    await conn.executemany(
        """
        INSERT INTO stake_accounts (stake_pubkey, user_id, staker, withdrawer, vote_account, validator_id,
                                    staked_amount, state, activation_epoch, deactivation_epoch)
        VALUES ($1, $2, $3, $4, $5, (SELECT id FROM validators WHERE vote_account = $5), $6, $7, $8, $9)
        ON CONFLICT (stake_pubkey) DO UPDATE SET
            user_id = EXCLUDED.user_id, staker = EXCLUDED.staker, withdrawer = EXCLUDED.withdrawer,
            vote_account = EXCLUDED.vote_account, validator_id = EXCLUDED.validator_id,
            staked_amount = EXCLUDED.staked_amount, state = EXCLUDED.state,
            activation_epoch = EXCLUDED.activation_epoch, deactivation_epoch = EXCLUDED.deactivation_epoch,
            updated_at = now()
        """,
        [
            (a.stake_pubkey, user_id, a.staker, a.withdrawer, a.vote_account, a.delegated_stake, a.state,
             a.activation_epoch, a.deactivation_epoch)
            for a in stakes.accounts
        ],
    )


async def refresh_stake_accounts(app: web.Application, principal: Principal) -> StakeRefresh:
    """The GraphQL mutation's hook: the app's pool, and the RPC the fetcher uses (simulator fallback too)."""
    _wallet_user(principal)  # refuse before any network call
    settings = app[SETTINGS]
    urls = list(settings.solana_rpc_urls)
    fallback = await read_fallback(app[REDIS], settings.redis_prefix)
    if fallback and fallback.get("url"):
        urls = [str(fallback["url"])]
    async with RpcClient(urls, timeout=settings.rpc_timeout, max_retries=settings.rpc_max_retries,
                         max_response_bytes=settings.rpc_max_response_bytes) as rpc:
        return await refresh_wallet_stakes(app[DB_POOL], rpc, principal)


async def stake_overview(
    pool: asyncpg.Pool, principal: Principal, *, user_id: int | None = None, suggestions: int = SUGGESTIONS
) -> list[dict[str, Any]]:
    """Stake accounts of the principal (or of `user_id`, with read:users), judged against current scores."""
    if principal.anonymous:
        raise StakeAccessError("sign in to see stake accounts")
    own_id = int(principal.user_id) if principal.user_id is not None and principal.user_id.isdigit() else None
    own = user_id is None or user_id == own_id
    if not own and not principal.can(READ_USERS):
        raise StakeAccessError("another user's stake accounts need the read:users permission")
    target = user_id if user_id is not None else own_id
    wallet = principal.wallet_pubkey if own else None
    async with pool.acquire() as conn:
        rows = await conn.fetch(_ACCOUNTS_SQL, target, wallet, RECENT_RUG_EPOCHS)
        candidates = await conn.fetch(_CANDIDATES_SQL, RECENT_RUG_EPOCHS, _SUGGESTION_POOL)
    return [_judge(row, candidates, suggestions) for row in rows]


def _judge(row: asyncpg.Record, candidates: list[asyncpg.Record], limit: int) -> dict[str, Any]:
    score = row["latest_score"]
    better = [
        {"voteAccount": c["vote_account"], "name": c["name"], "latestScore": c["latest_score"],
         "commission": c["commission"]}
        for c in candidates
        if c["vote_account"] != row["vote_account"] and (score is None or c["latest_score"] > score)
    ][:limit]
    validator = None
    if row["validator_vote"] is not None:
        validator = {"voteAccount": row["validator_vote"], "name": row["name"], "latestScore": score,
                     "commission": row["commission"], "delinquent": row["delinquent"]}
    return {
        "stakePubkey": row["stake_pubkey"],
        "stakedAmount": str(row["staked_amount"]),
        "state": row["state"],
        "voteAccount": row["vote_account"],
        "activationEpoch": row["activation_epoch"],
        "deactivationEpoch": row["deactivation_epoch"],
        "validator": validator,
        "recentRug": row["rug_epoch"] is not None,
        "rugEpoch": row["rug_epoch"],
        "suggestions": better,
    }


_NEWEST_EPOCH = "(SELECT max(last_seen_epoch) FROM validators)"

_ACCOUNTS_SQL = f"""
SELECT s.stake_pubkey, s.staked_amount, s.state, s.vote_account, s.activation_epoch, s.deactivation_epoch,
       v.vote_account AS validator_vote, v.name, v.latest_score, v.commission, v.delinquent,
       (SELECT max(e.epoch) FROM commission_events e
         WHERE e.validator_id = v.id AND e.kind = 'rug'
           AND e.epoch >= coalesce({_NEWEST_EPOCH}, e.epoch) - $3) AS rug_epoch
FROM stake_accounts s
LEFT JOIN validators v ON v.id = coalesce(s.validator_id,
                                          (SELECT id FROM validators WHERE vote_account = s.vote_account))
WHERE ($1::bigint IS NOT NULL AND s.user_id = $1)
   OR ($2::text IS NOT NULL AND (s.staker = $2 OR s.withdrawer = $2))
ORDER BY s.staked_amount DESC, s.stake_pubkey
"""

# Well-scored, currently voting validators without a recent rug: the pool suggestions are drawn from.
_CANDIDATES_SQL = f"""
SELECT v.vote_account, v.name, v.latest_score, v.commission
FROM validators v
WHERE v.latest_score IS NOT NULL AND NOT v.delinquent
  AND NOT EXISTS (SELECT 1 FROM commission_events e
                  WHERE e.validator_id = v.id AND e.kind = 'rug'
                    AND e.epoch >= coalesce({_NEWEST_EPOCH}, e.epoch) - $1)
ORDER BY v.latest_score DESC, v.commission ASC NULLS LAST, v.id
LIMIT $2
"""
