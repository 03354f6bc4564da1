"""What a real consumer needs beyond the seed: pagination, filters, sorting, breakdown, history,
commission events, recommendations — and one SQL query per field level, whatever the row count."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from http_app.graphql.engine import create_executor
from http_app.graphql.loaders import Loaders
from http_app.principal import ROLE_PERMISSIONS, Principal
from stream_app.db import _init_connection, create_pool
from stream_app.settings import Settings
from tests.api.conftest import gql
from tests.api.seed import Seeded, seed

PAGE = """query($first: Int, $after: String, $filter: ValidatorFilter, $orderBy: ValidatorOrder) {
  validatorsConnection(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    totalCount pageInfo { hasNextPage endCursor } nodes { voteAccount latestScore commission delinquent name }
  }
}"""


async def page(api: TestClient, **variables: Any) -> dict[str, Any]:
    status, body = await gql(api, PAGE, variables)
    assert status == 200 and "errors" not in body, body
    result: dict[str, Any] = body["data"]["validatorsConnection"]
    return result


async def test_cursor_pagination_walks_everything_once(api: TestClient, seeded: Seeded) -> None:
    seen: list[str] = []
    after = None
    scores: list[float] = []
    while True:
        conn = await page(api, first=6, after=after)
        assert conn["totalCount"] == 20
        seen += [n["voteAccount"] for n in conn["nodes"]]
        scores += [n["latestScore"] for n in conn["nodes"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert sorted(seen) == sorted(seeded.vote_accounts) and len(seen) == 20
    assert scores == sorted(scores, reverse=True)  # default order: best score first


async def test_default_page_size_and_sorting(api: TestClient, seeded: Seeded) -> None:
    conn = await page(api)
    assert len(conn["nodes"]) == 20  # default 20 (all of the 20 seeded)
    asc = await page(api, first=5, orderBy={"field": "COMMISSION", "direction": "ASC"})
    commissions = [n["commission"] for n in asc["nodes"]]
    assert commissions == sorted(commissions)
    by_name = await page(api, first=20, orderBy={"field": "NAME", "direction": "ASC"})
    names = [(n["name"] or "").lower() for n in by_name["nodes"]]
    assert names == sorted(names)


async def test_filters(api: TestClient, seeded: Seeded) -> None:
    good = await page(api, first=100, filter={"minScore": 60, "maxCommission": 10, "delinquent": False})
    assert good["totalCount"] == len(good["nodes"]) > 0
    assert all(n["latestScore"] >= 60 and n["commission"] <= 10 and not n["delinquent"] for n in good["nodes"])
    by_name = await page(api, filter={"search": "validator 0003"})
    assert [n["name"] for n in by_name["nodes"]] == ["Validator 0003"]
    prefix = seeded.vote_accounts[9][:12]
    by_key = await page(api, filter={"search": prefix})
    assert seeded.vote_accounts[9] in [n["voteAccount"] for n in by_key["nodes"]]
    # Bounds beyond the smallint column are compared as numbers, not overflowed (found by the SDL fuzzer).
    everyone = await page(api, first=100, filter={"maxCommission": 32768.5, "minScore": -1e300})
    assert everyone["totalCount"] == len(seeded.vote_accounts)
    weird = await page(api, filter={"search": "%_\\"})
    assert weird["totalCount"] == 0  # LIKE wildcards are escaped, not interpreted


async def test_bad_cursor_is_user_error(api: TestClient, seeded: Seeded) -> None:
    status, body = await gql(api, PAGE, {"after": "bm90LWEtY3Vyc29y"})
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    first = await page(api, first=2)
    status, body = await gql(api, PAGE, {"after": first["pageInfo"]["endCursor"],
                                         "orderBy": {"field": "STAKE"}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_validator_breakdown_history_and_events(api: TestClient, seeded: Seeded) -> None:
    query = """query($v: String!) { validator(voteAccount: $v) {
        voteAccount
        latestTrustScore { score confidence scoringVersion epoch components { name weight score contribution }
                           penalties { kind factor sinceEpoch } }
        trustScores(last: 1) { scoringRunId }
        all: trustScores { score }
        commissionEvents { kind isRug oldCommission newCommission epoch }
    } }"""
    _, body = await gql(api, query, {"v": seeded.vote_accounts[2]})
    v = body["data"]["validator"]
    assert [c["name"] for c in v["latestTrustScore"]["components"]] == ["vote_credits", "commission"]
    assert v["trustScores"] == [{"scoringRunId": seeded.run_ids[-1]}] and len(v["all"]) == 2
    assert v["commissionEvents"] == [{"kind": "rug", "isRug": True, "oldCommission": 5, "newCommission": 100,
                                      "epoch": 699}]
    penalised = next(v for v, pk in zip(seeded.vote_accounts, seeded.validator_ids, strict=True) if pk % 10 == 1)
    _, body = await gql(api, query, {"v": penalised})
    assert body["data"]["validator"]["latestTrustScore"]["penalties"] == [
        {"kind": "superminority", "factor": 0.9, "sinceEpoch": 690}]


async def test_commission_events_query(api: TestClient, seeded: Seeded) -> None:
    _, body = await gql(api, "{ commissionEvents(kind: rug) { voteAccount isRug validator { voteAccount } } }")
    events = body["data"]["commissionEvents"]
    assert {e["voteAccount"] for e in events} == {seeded.vote_accounts[2], seeded.vote_accounts[3]}
    assert all(e["isRug"] and e["validator"]["voteAccount"] == e["voteAccount"] for e in events)


async def test_recommended_avoids_superminority_and_recent_ruggers(api: TestClient, seeded: Seeded,
                                                                   db_pool: asyncpg.Pool) -> None:
    _, body = await gql(api, """{ recommendedValidators(limit: 100, maxCommission: 100) {
        rank stakeShare validator { voteAccount latestScore delinquent } } }""")
    picks = body["data"]["recommendedValidators"]
    votes = [p["validator"]["voteAccount"] for p in picks]
    assert picks and [p["rank"] for p in picks] == list(range(1, len(picks) + 1))
    scores = [p["validator"]["latestScore"] for p in picks]
    assert scores == sorted(scores, reverse=True)
    assert seeded.vote_accounts[2] not in votes  # rugged last epoch
    assert seeded.vote_accounts[3] in votes or seeded.vote_accounts[3] in await superminority(db_pool)
    assert not set(votes) & await superminority(db_pool)
    assert not any(p["validator"]["delinquent"] for p in picks)


async def superminority(pool: asyncpg.Pool) -> set[str]:
    rows = await pool.fetch("SELECT vote_account, activated_stake FROM validators WHERE NOT delinquent "
                            "ORDER BY activated_stake DESC, id")
    total = sum(r["activated_stake"] for r in rows)
    members, cumulative = set(), 0
    for r in rows:
        if cumulative >= total / 3:
            break
        members.add(r["vote_account"])
        cumulative += r["activated_stake"]
    return members


# ---- no N+1: count real SQL statements ------------------------------------------------------------------

SCORING_RUNS = "{ scoringRuns { id trustScores { score validator { validatorPubkey latestTrustScore { id } } } } }"
VALIDATORS = """{ validators { id trustScores { id } latestTrustScore { score validator { id } }
                 commissionEvents { kind } } }"""
USERS = "{ users { id stakeAccounts { stakedAmount validator { name latestTrustScore { score } } } } }"


@pytest.mark.parametrize(("query", "levels"), [(VALIDATORS, 5), (SCORING_RUNS, 4), (USERS, 4)])
async def test_one_query_per_field_level(database_url: str, query: str, levels: int) -> None:
    statements: list[str] = []

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        conn.add_query_logger(lambda logged: statements.append(logged.query))

    pool = await create_pool(database_url, Settings.from_env({}), min_size=1, max_size=2, init=init)
    executor = create_executor("solstake")
    await executor.start()
    admin = Principal(user_id="1", role="admin", permissions=ROLE_PERMISSIONS["admin"])
    try:
        counts = []
        for n in (5, 40):  # 8x the rows, the same number of statements
            await seed(pool, validators=n, runs=2, users=3, rng_seed=n)
            for _ in range(2):  # the first run also lets asyncpg introspect types; count the second
                statements.clear()
                result = await executor.execute(query, None, None, {"principal": admin, "pool": pool,
                                                                     "loaders": Loaders()})
            assert "errors" not in result, result
            counts.append(len([q for q in statements if "FROM" in q]))  # not the pool's own resets
            await pool.execute("TRUNCATE validators, scoring_runs, users, stake_accounts CASCADE")
        assert counts == [levels, levels]
    finally:
        await pool.close()


async def test_my_stake_accounts_and_refresh_guard(api: TestClient, api_settings: Settings, seeded: Seeded,
                                                   db_pool: asyncpg.Pool) -> None:
    from tests.api.conftest import bearer

    wallet = seeded.user_wallets[1]
    user_id = str(await db_pool.fetchval("SELECT id FROM users WHERE wallet_pubkey = $1", wallet))
    query = "{ myStakeAccounts { stakePubkey stakedAmount validator { voteAccount } } }"
    _, body = await gql(api, query)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    _, body = await gql(api, query, headers=bearer(api_settings, "user", user_id=user_id, wallet=wallet))
    mine = body["data"]["myStakeAccounts"]
    assert len(mine) == 2 and all(s["validator"]["voteAccount"] in seeded.vote_accounts for s in mine)

    refresh = "mutation { refreshMyStakeAccounts { stakePubkey } }"
    _, body = await gql(api, refresh, headers=bearer(api_settings, "viewer"))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # no write:stakes
    _, body = await gql(api, refresh, headers=bearer(api_settings, "user", user_id=user_id))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # signed in, but not with a wallet
