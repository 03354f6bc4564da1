"""Contract: every query of the seed README, sent by a third-party client (gql) over real HTTP and
WebSocket, answers with the documented shape; protected ones only for the documented permissions."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gql import Client, gql
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from stream_app.settings import Settings
from tests.api.conftest import bearer
from tests.api.seed import Seeded

HOT = """query { validators { id validatorPubkey uptime commission latestTrustScore { score createdAt } } }"""

GET_VALIDATORS = """query GetValidators {
  validators {
    id voteAccount name validatorPubkey commission uptime
    trustScores { id score createdAt scoringRunId }
    latestTrustScore { id score createdAt }
    createdAt updatedAt
  }
}"""

GET_SCORING_RUNS = """query GetScoringRuns {
  scoringRuns {
    id runDate status validatorCount successCount failCount
    trustScores { score validator { validatorPubkey } }
  }
}"""

GET_USERS = """query GetUsers {
  users { id walletPubkey stakeAccounts { id stakedAmount validator { validatorPubkey name } } }
}"""

SYSTEM_STATS = "query GetSystemStats { systemStats { validatorCount userCount scoringRunCount timestamp } }"
CACHE_STATUS = "query { cacheStatus { totalKeys memoryUsage hitRate } }"
CLEAR_CACHE = "mutation ClearCache { clearCache { success message timestamp } }"
INVALIDATE = "mutation InvalidateValidatorCache { invalidateValidatorCache { success message timestamp } }"


def http_client(api: TestClient, headers: dict[str, str] | None = None) -> Client:
    return Client(transport=AIOHTTPTransport(url=str(api.make_url("/graphql")), headers=headers))


async def run(api: TestClient, query: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with http_client(api, headers) as session:
        result: dict[str, Any] = await session.execute(gql(query))
        return result


async def refused_code(api: TestClient, query: str, headers: dict[str, str] | None = None) -> str:
    with pytest.raises(TransportQueryError) as info:
        await run(api, query, headers)
    errors = info.value.errors or []
    return str(errors[0]["extensions"]["code"])


async def test_hot_query_shape(api: TestClient, seeded: Seeded) -> None:
    rows = (await run(api, HOT))["validators"]
    assert len(rows) == len(seeded.vote_accounts)
    for row in rows:
        assert set(row) == {"id", "validatorPubkey", "uptime", "commission", "latestTrustScore"}
        assert isinstance(row["id"], str) and isinstance(row["uptime"], float)
        assert set(row["latestTrustScore"]) == {"score", "createdAt"}
        assert row["latestTrustScore"]["createdAt"].endswith("Z")


async def test_get_validators_shape(api: TestClient, seeded: Seeded) -> None:
    rows = (await run(api, GET_VALIDATORS))["validators"]
    assert [r["voteAccount"] for r in rows] == seeded.vote_accounts  # seed order: by id
    for row in rows:
        assert len(row["trustScores"]) == len(seeded.run_ids)
        newest = row["trustScores"][0]
        assert newest["id"] == row["latestTrustScore"]["id"]
        assert newest["scoringRunId"] == seeded.run_ids[-1]
        assert row["createdAt"] <= row["updatedAt"]


async def test_scoring_runs_need_read_scores(api: TestClient, api_settings: Settings, seeded: Seeded) -> None:
    assert await refused_code(api, GET_SCORING_RUNS) == "UNAUTHENTICATED"
    runs = (await run(api, GET_SCORING_RUNS, bearer(api_settings, "viewer")))["scoringRuns"]
    assert [r["id"] for r in runs] == list(reversed(seeded.run_ids))  # newest first
    for r in runs:
        assert r["status"] == "completed" and r["validatorCount"] == len(seeded.vote_accounts)
        assert {s["validator"]["validatorPubkey"] for s in r["trustScores"]} == set(seeded.identities)


async def test_users_need_read_users(api: TestClient, api_settings: Settings, seeded: Seeded) -> None:
    assert await refused_code(api, GET_USERS) == "UNAUTHENTICATED"
    assert await refused_code(api, GET_USERS, bearer(api_settings, "user")) == "FORBIDDEN"
    users = (await run(api, GET_USERS, bearer(api_settings, "admin")))["users"]
    assert [u["walletPubkey"] for u in users] == seeded.user_wallets
    for u in users:
        assert len(u["stakeAccounts"]) == 2
        assert all(s["stakedAmount"].isdigit() and s["validator"]["validatorPubkey"] for s in u["stakeAccounts"])


async def test_system_stats_admin_only(api: TestClient, api_settings: Settings, seeded: Seeded) -> None:
    assert await refused_code(api, SYSTEM_STATS, bearer(api_settings, "viewer")) == "FORBIDDEN"
    stats = (await run(api, SYSTEM_STATS, bearer(api_settings, "admin")))["systemStats"]
    assert stats["validatorCount"] == len(seeded.vote_accounts)
    assert stats["userCount"] == len(seeded.user_wallets)
    assert stats["scoringRunCount"] == len(seeded.run_ids)


async def test_cache_status_and_mutations(api: TestClient, api_settings: Settings, seeded: Seeded,
                                          db_pool: Any) -> None:
    admin = bearer(api_settings, "admin")
    await run(api, HOT)
    await run(api, HOT)
    status = (await run(api, CACHE_STATUS, admin))["cacheStatus"]
    assert status["totalKeys"] >= 1 and status["memoryUsage"]
    assert status["hitRate"] == pytest.approx(0.5)  # one miss, then one hit
    assert await refused_code(api, CLEAR_CACHE, bearer(api_settings, "user")) == "FORBIDDEN"
    for mutation, field in ((INVALIDATE, "invalidateValidatorCache"), (CLEAR_CACHE, "clearCache")):
        result = (await run(api, mutation, admin))[field]
        assert result["success"] is True and result["timestamp"]
    actions = [r["action"] for r in await db_pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions[-2:] == ["cache.invalidate_validators", "cache.clear"]


@pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
async def test_queries_over_websocket(api: TestClient, seeded: Seeded, subprotocol: str) -> None:
    url = str(api.make_url("/graphql")).replace("http", "ws", 1)
    transport = WebsocketsTransport(url=url, subprotocols=[subprotocol])
    async with Client(transport=transport) as session:
        rows = (await session.execute(gql(HOT)))["validators"]
        assert transport.subprotocol == subprotocol
    assert len(rows) == len(seeded.vote_accounts)
