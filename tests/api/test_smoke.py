"""First light: the seed's hot query over real HTTP answers every validator with its latest score."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.api.conftest import gql
from tests.api.seed import Seeded

HOT = "{ validators { id validatorPubkey uptime commission latestTrustScore { score createdAt } } }"


async def test_hot_query(api: TestClient, seeded: Seeded) -> None:
    status, body = await gql(api, HOT)
    assert status == 200, body
    rows = body["data"]["validators"]
    assert len(rows) == len(seeded.vote_accounts)
    assert {r["validatorPubkey"] for r in rows} == set(seeded.identities)
    assert all(r["latestTrustScore"]["score"] is not None for r in rows)
