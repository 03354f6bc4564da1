"""Seed the database the way the pipeline sink would: validators, runs, scores, events, users, stakes."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

import asyncpg

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def pubkey(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(44))


@dataclass
class Seeded:
    vote_accounts: list[str] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)
    validator_ids: list[int] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    user_wallets: list[str] = field(default_factory=list)
    ruggers: list[str] = field(default_factory=list)


async def seed(pool: asyncpg.Pool, validators: int = 20, runs: int = 2, users: int = 2,
               rng_seed: int = 7, epoch: int = 700) -> Seeded:
    rng = random.Random(rng_seed)
    out = Seeded()
    rows = []
    for i in range(validators):
        vote, ident = pubkey(rng), pubkey(rng)
        out.vote_accounts.append(vote)
        out.identities.append(ident)
        stake = rng.randint(1, 10_000_000) * 1_000_000_000 if i % 10 else rng.randint(10, 20) * 10**16
        rows.append((vote, ident, f"Validator {i:04d}" if i % 7 else None, rng.choice([0, 5, 7, 10, 100]),
                     stake, rng.uniform(80, 100), i % 13 == 5, "2.2.16"))
    await pool.copy_records_to_table(
        "validators", records=rows,
        columns=["vote_account", "validator_pubkey", "name", "commission", "activated_stake", "uptime",
                 "delinquent", "version"],
    )
    id_rows = await pool.fetch("SELECT id, vote_account FROM validators ORDER BY id")
    by_vote = {r["vote_account"]: r["id"] for r in id_rows}
    out.validator_ids = [by_vote[v] for v in out.vote_accounts]
    for r in range(runs):
        run_id = str(uuid.UUID(int=rng.getrandbits(128)))
        out.run_ids.append(run_id)
        await pool.execute(
            """INSERT INTO scoring_runs (id, run_date, status, validator_count, success_count, fail_count, epoch,
                                         slot, scoring_version, completed_at)
               VALUES ($1, now() - make_interval(hours => $2), 'completed', $3, $3, 0, $4, $5, 'v1',
                       now() - make_interval(hours => $2))""",
            uuid.UUID(run_id), runs - r, validators, epoch - runs + r + 1, 1000 * (r + 1),
        )
        scores = []
        for vid in out.validator_ids:
            score = round(rng.uniform(20, 99), 2)
            components = [{"name": "vote_credits", "raw": 0.97, "reference": 0.99, "score": score, "weight": 0.5,
                           "contribution": score / 2, "n": 3},
                          {"name": "commission", "raw": 5, "reference": 10, "score": 90.0, "weight": 0.5,
                           "contribution": 45.0, "n": 1}]
            penalties = [{"kind": "superminority", "reason": "top stake", "factor": 0.9, "since_epoch": 690,
                          "expires_epoch": None}] if vid % 10 == 1 else []
            scores.append((vid, uuid.UUID(run_id), score, 0.8, components, penalties, "v1", epoch - runs + r + 1))
        await pool.executemany(
            """INSERT INTO trust_scores (validator_id, scoring_run_id, score, confidence, components, penalties,
                                         scoring_version, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            scores,
        )
        await pool.execute(
            """UPDATE trust_scores SET created_at = now() - make_interval(hours => $2) WHERE scoring_run_id = $1""",
            uuid.UUID(run_id), runs - r,
        )
    if runs:
        await pool.execute(
            """UPDATE validators v SET latest_score = t.score, latest_scoring_run_id = t.scoring_run_id
               FROM trust_scores t WHERE t.validator_id = v.id AND t.scoring_run_id = $1""",
            uuid.UUID(out.run_ids[-1]),
        )
    # Two ruggers (one recent, one long ago) and one harmless decrease.
    if validators >= 4:
        await pool.executemany(
            """INSERT INTO commission_events (validator_id, epoch, kind, old_commission, new_commission)
               VALUES ($1, $2, $3, $4, $5)""",
            [(out.validator_ids[2], epoch - 1, "rug", 5, 100), (out.validator_ids[3], epoch - 200, "rug", 0, 100),
             (out.validator_ids[4], epoch, "decrease", 10, 5)],
        )
        out.ruggers = [out.vote_accounts[2]]
    for u in range(users):
        wallet = pubkey(rng)
        out.user_wallets.append(wallet)
        user_id = await pool.fetchval("INSERT INTO users (wallet_pubkey, role) VALUES ($1, 'user') RETURNING id",
                                      wallet)
        for s in range(2):
            vid = out.validator_ids[(u * 2 + s) % len(out.validator_ids)] if validators else None
            await pool.execute(
                """INSERT INTO stake_accounts (stake_pubkey, user_id, staker, withdrawer, vote_account, validator_id,
                                               staked_amount, state, activation_epoch)
                   VALUES ($1, $2, $3, $3, $4, $5, $6, 'active', 600)""",
                pubkey(rng), user_id, wallet, out.vote_accounts[(u * 2 + s) % validators] if validators else None,
                vid, 123_456_789_000 * (s + 1),
            )
    return out
