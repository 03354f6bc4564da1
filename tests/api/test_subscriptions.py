"""Subscriptions over WebSocket: snapshot first, then live changes with increasing versions; both
protocols via gql; heartbeat, init timeout, per-socket cap and token rejection on raw sockets."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from http_app.graphql.ws import WsOptions
from http_app.keys import LIVE_HUB
from stream_app import live
from tests.api.seed import Seeded

PROTOCOLS = ["graphql-transport-ws", "graphql-ws"]
RUNS = "subscription { scoringRunCompleted { version snapshot run { id status successCount } } }"
SCORES = """subscription($v: [String!]) {
  trustScoresUpdated(voteAccounts: $v) { version snapshot runId scores { voteAccount score validator { name } } }
}"""


def version_key(version: str) -> tuple[int, int]:
    ms, seq = version.split("-")
    return int(ms), int(seq)


def ws_url(api: TestClient) -> str:
    return str(api.make_url("/graphql")).replace("http", "ws", 1)


async def hub_ready(api: TestClient) -> None:
    await asyncio.wait_for(api.app[LIVE_HUB].connected.wait(), 5)


async def next_of(stream: Any) -> dict[str, Any]:
    result: dict[str, Any] = await asyncio.wait_for(stream.__anext__(), 5.0)
    return result


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_new_run_appears_on_socket(api: TestClient, seeded: Seeded, db_pool: asyncpg.Pool,
                                         redis_client: aioredis.Redis, redis_prefix: str, protocol: str) -> None:
    await hub_ready(api)
    transport = WebsocketsTransport(url=ws_url(api), subprotocols=[protocol])
    async with Client(transport=transport) as session:
        stream = session.subscribe(gql(RUNS))
        snapshot = (await next_of(stream))["scoringRunCompleted"]
        assert snapshot["snapshot"] is True and snapshot["run"]["id"] == seeded.run_ids[-1]

        run_id = str(uuid.uuid4())
        await db_pool.execute(
            "INSERT INTO scoring_runs (id, status, validator_count, success_count, epoch) "
            "VALUES ($1, 'completed', 20, 19, 800)", uuid.UUID(run_id))
        await live.announce(redis_client, redis_prefix, {"type": "run", "run_id": run_id, "status": "running",
                                                         "success_count": 0, "fail_count": 0, "validator_count": 20})
        await live.announce(redis_client, redis_prefix, {"type": "run", "run_id": run_id, "status": "completed",
                                                         "success_count": 19, "fail_count": 1, "validator_count": 20})
        update = (await next_of(stream))["scoringRunCompleted"]
        assert update["snapshot"] is False  # the "running" announcement was not a completion
        assert update["run"] == {"id": run_id, "status": "completed", "successCount": 19}
        assert version_key(update["version"]) > version_key(snapshot["version"])
        await stream.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_scores_then_reconnect_gets_snapshot(api: TestClient, seeded: Seeded, db_pool: asyncpg.Pool,
                                                   redis_client: aioredis.Redis, redis_prefix: str,
                                                   protocol: str) -> None:
    await hub_ready(api)
    watched = seeded.vote_accounts[1]
    variables = {"v": [watched]}
    transport = WebsocketsTransport(url=ws_url(api), subprotocols=[protocol])
    async with Client(transport=transport) as session:
        stream = session.subscribe(gql(SCORES), variable_values=variables)
        snapshot = (await next_of(stream))["trustScoresUpdated"]
        assert snapshot["snapshot"] is True
        assert [s["voteAccount"] for s in snapshot["scores"]] == [watched]

        await db_pool.execute("UPDATE validators SET latest_score = 42.5 WHERE vote_account = $1", watched)
        await live.announce(redis_client, redis_prefix, {"type": "scores", "run_id": "r9", "epoch": 801,
                                                         "validators": [seeded.vote_accounts[0]]})  # not watched
        await live.announce(redis_client, redis_prefix, {"type": "scores", "run_id": "r9", "epoch": 801,
                                                         "validators": [seeded.vote_accounts[0], watched]})
        change = (await next_of(stream))["trustScoresUpdated"]
        assert change["snapshot"] is False and change["runId"] == "r9"
        assert [(s["voteAccount"], s["score"]) for s in change["scores"]] == [(watched, 42.5)]
        assert version_key(change["version"]) > version_key(snapshot["version"])
        await stream.aclose()

    # Reconnect: the snapshot already holds the new score, at a version not older than the last change.
    transport = WebsocketsTransport(url=ws_url(api), subprotocols=[protocol])
    async with Client(transport=transport) as session:
        stream = session.subscribe(gql(SCORES), variable_values=variables)
        again = (await next_of(stream))["trustScoresUpdated"]
        assert again["snapshot"] is True and again["scores"][0]["score"] == 42.5
        assert version_key(again["version"]) >= version_key(change["version"])
        await stream.aclose()


async def test_commission_rug_flagged(api: TestClient, seeded: Seeded, redis_client: aioredis.Redis,
                                      redis_prefix: str) -> None:
    await hub_ready(api)
    vote = seeded.vote_accounts[5]
    query = """subscription($v: [String!]) { commissionChanged(voteAccounts: $v) {
                 version snapshot voteAccount kind isRug oldCommission newCommission validator { voteAccount } } }"""
    async with Client(transport=WebsocketsTransport(url=ws_url(api))) as session:
        stream = session.subscribe(gql(query), variable_values={"v": [vote]})
        waiting = asyncio.ensure_future(next_of(stream))  # sends the subscribe message
        hub = api.app[LIVE_HUB]
        for _ in range(250):  # no snapshot to wait for: this validator never changed commission
            if hub.subscriber_count:
                break
            await asyncio.sleep(0.02)
        await live.announce(redis_client, redis_prefix, {"type": "commission", "vote_pubkey": vote, "epoch": 801,
                                                         "kind": "rug", "old_commission": 5, "new_commission": 100})
        event = (await waiting)["commissionChanged"]
        await stream.aclose()
    assert event["isRug"] is True and event["kind"] == "rug" and event["newCommission"] == 100
    assert event["validator"] == {"voteAccount": vote}


async def init(ws: aiohttp.ClientWebSocketResponse, payload: dict[str, Any] | None = None) -> None:
    await ws.send_json({"type": "connection_init", "payload": payload or {}})
    ack = await ws.receive_json(timeout=5)
    assert ack["type"] == "connection_ack"


async def test_heartbeat_keeps_idle_socket_open(make_api: Any, seeded: Seeded) -> None:
    client: TestClient = await make_api(ws_options=WsOptions(heartbeat=0.2))
    async with client.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
        await init(ws)
        pings = 0
        deadline = asyncio.get_running_loop().time() + 1.5  # several heartbeats of idleness
        while asyncio.get_running_loop().time() < deadline:
            try:
                msg = await ws.receive_json(timeout=0.5)
            except TimeoutError:
                continue
            if msg["type"] == "ping":
                pings += 1
                await ws.send_json({"type": "pong"})
        assert pings >= 3
        assert not ws.closed
        await ws.send_json({"type": "subscribe", "id": "1", "payload": {"query": "{ validators { id } }"}})
        reply = await ws.receive_json(timeout=5)
        while reply["type"] == "ping":
            reply = await ws.receive_json(timeout=5)
        assert reply["type"] == "next" and len(reply["payload"]["data"]["validators"]) == 20


async def test_legacy_keepalive(make_api: Any) -> None:
    client: TestClient = await make_api(ws_options=WsOptions(heartbeat=0.2))
    async with client.ws_connect("/graphql", protocols=["graphql-ws"]) as ws:
        await init(ws)
        kinds = [(await ws.receive_json(timeout=2))["type"] for _ in range(3)]
        assert kinds == ["ka", "ka", "ka"]


async def test_init_timeout_closes_4408(make_api: Any) -> None:
    client: TestClient = await make_api(ws_options=WsOptions(init_timeout=0.3))
    async with client.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4408


async def test_subscription_cap_per_socket(make_api: Any, seeded: Seeded) -> None:
    client: TestClient = await make_api(ws_options=WsOptions(max_subscriptions=1))
    async with client.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
        await init(ws)
        await ws.send_json({"type": "subscribe", "id": "a", "payload": {"query": RUNS}})
        first = await ws.receive_json(timeout=5)
        assert first["id"] == "a" and first["type"] == "next"
        await ws.send_json({"type": "subscribe", "id": "b", "payload": {"query": RUNS}})
        refused = await ws.receive_json(timeout=5)
        assert refused["type"] == "error" and refused["id"] == "b"
        assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
        await ws.send_json({"type": "complete", "id": "a"})
        assert await ws.receive_json(timeout=5) == {"type": "complete", "id": "a"}
        await ws.send_json({"type": "subscribe", "id": "c", "payload": {"query": RUNS}})
        assert (await ws.receive_json(timeout=5))["id"] == "c"


async def test_bad_token_closes_4403_and_subscribe_before_init_4401(api: TestClient) -> None:
    async with api.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"Authorization": "Bearer not-a-token"}})
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4403
    async with api.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
        await ws.send_json({"type": "subscribe", "id": "1", "payload": {"query": RUNS}})
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401


async def test_invalid_operation_gets_error_not_close(api: TestClient) -> None:
    async with api.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
        await init(ws)
        await ws.send_json({"type": "subscribe", "id": "1", "payload": {"query": "subscription { nope }"}})
        msg = await ws.receive_json(timeout=5)
        assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=5))["type"] == "pong"


async def test_identical_subscriptions_share_one_stream(api: TestClient, seeded: Seeded,
                                                        redis_client: aioredis.Redis, redis_prefix: str) -> None:
    from http_app.graphql.fanout import SHARED

    await hub_ready(api)
    watched = seeded.vote_accounts[0]
    payload = {"query": SCORES, "variables": {"v": [watched]}}
    sockets = []
    for _ in range(3):
        ws = await api.ws_connect("/graphql", protocols=["graphql-transport-ws"])
        await init(ws)
        await ws.send_json({"type": "subscribe", "id": "s", "payload": payload})
        snapshot = await ws.receive_json(timeout=5)
        assert snapshot["payload"]["data"]["trustScoresUpdated"]["snapshot"] is True
        sockets.append(ws)
    assert api.app[SHARED].group_count == 1
    entry = await live.announce(redis_client, redis_prefix, {"type": "scores", "run_id": "r", "epoch": 1,
                                                             "validators": [watched]})
    for ws in sockets:
        change = (await ws.receive_json(timeout=5))["payload"]["data"]["trustScoresUpdated"]
        assert change["snapshot"] is False and change["version"] == entry
        await ws.close()


async def test_socket_closes_when_its_token_expires(api: TestClient, api_settings: Any) -> None:
    import time

    from http_app.tokens import Identity, Keyring, issue_access_token

    keyring = Keyring.from_settings(api_settings)
    soon = issue_access_token(keyring, Identity(user_id="5", role="viewer"),
                              now=time.time() - keyring.access_ttl + 1.5)  # expires in about 1.5 s
    async with api.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
        await init(ws, {"Authorization": f"Bearer {soon}"})
        msg = await ws.receive(timeout=6)
        while msg.type == aiohttp.WSMsgType.TEXT:  # pings, if any
            msg = await ws.receive(timeout=6)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401


async def test_open_sockets_capped_per_client(make_api: Any) -> None:
    client: TestClient = await make_api(ws_options=WsOptions(max_sockets_per_client=2))
    first = await client.ws_connect("/graphql", protocols=["graphql-transport-ws"])
    second = await client.ws_connect("/graphql", protocols=["graphql-transport-ws"])
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/graphql", protocols=["graphql-transport-ws"])
    assert refused.value.status == 429
    await first.close()
    await asyncio.sleep(0.1)
    third = await client.ws_connect("/graphql", protocols=["graphql-transport-ws"])  # a slot was freed
    await init(third)
    for ws in (second, third):
        await ws.close()
