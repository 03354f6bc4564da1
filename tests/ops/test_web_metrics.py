"""The web process's /metrics: valid exposition (prometheus-client's parser, promtool when installed), RED
counters that move by exactly the requests made, business gauges read from PostgreSQL, the scrape token,
and the request id on log lines."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from http_app.app import create_app
from stream_app.settings import Settings
from tests.ops.conftest import MakeClient, promtool_check, samples, seed_business, value

pytestmark = pytest.mark.timeout(90)  # a hang fails this test instead of stalling the suite


async def scrape(client: TestClient, **headers: str) -> str:
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain")
    return await resp.text()


async def test_exposition_parses_and_passes_promtool(web: TestClient, db_pool: asyncpg.Pool) -> None:
    await seed_business(db_pool)
    await web.get("/health")
    await web.post("/graphql", json={"query": "{ __typename }"})
    await web.get("/no/such/path")
    text = await scrape(web)
    parsed = samples(text)  # raises on anything the official parser rejects
    families = {name for name, _labels in parsed}
    for expected in (
        "solstake_build_info", "solstake_http_requests_total", "solstake_http_request_duration_seconds_bucket",
        "solstake_graphql_requests_total", "solstake_graphql_operation_duration_seconds_count",
        "solstake_db_pool_connections", "solstake_validators", "solstake_data_freshness_seconds",
        "solstake_scoring_run_completion_ratio", "solstake_scoring_coverage_ratio",
        "solstake_validator_trust_score_bucket", "solstake_ws_connections_active",
        "solstake_graphql_subscriptions_active", "solstake_business_metrics_up",
    ):
        assert expected in families, expected
    for line in text.splitlines():
        if line.startswith("# HELP solstake_"):
            assert len(line.split(" ", 3)[3]) > 15, f"HELP too thin: {line}"
    complaints = promtool_check(text)
    if complaints is None:
        pytest.skip("promtool not installed (Debian package `prometheus`); the parser check passed")
    assert complaints == "", complaints


async def test_red_counters_move_by_exactly_the_requests_made(web: TestClient) -> None:
    before = samples(await scrape(web))
    for _ in range(3):
        assert (await web.get("/healthz")).status == 200
    assert (await web.get("/no/such/path")).status == 404
    assert (await web.post("/graphql", json={"query": "{ __typename }"})).status == 200
    after = samples(await scrape(web))

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("solstake_http_requests_total", method="GET", route="/healthz", code="200") == 3
    assert delta("solstake_http_request_duration_seconds_count", method="GET", route="/healthz") == 3
    assert delta("solstake_http_requests_total", method="GET", route="unmatched", code="404") == 1
    assert delta("solstake_http_requests_total", method="POST", route="/graphql", code="200") == 1
    assert delta("solstake_graphql_operation_duration_seconds_count", operation_type="query") == 1
    assert delta("solstake_graphql_requests_total", operation="query", outcome="ok") == 1
    # The scrape itself is counted once it is answered: the second scrape saw the first.
    assert delta("solstake_http_requests_total", method="GET", route="/metrics", code="200") == 1
    assert value(after, "solstake_http_requests_in_flight") == 1  # the scrape being answered


async def test_business_gauges_match_the_database(web: TestClient, db_pool: asyncpg.Pool) -> None:
    await seed_business(db_pool)
    parsed = samples(await scrape(web))
    assert value(parsed, "solstake_business_metrics_up") == 1
    assert value(parsed, "solstake_validators") == 6
    assert value(parsed, "solstake_validators_delinquent") == 1
    assert value(parsed, "solstake_validators_with_score") == 5
    assert value(parsed, "solstake_scoring_runs", status="completed") == 2
    assert value(parsed, "solstake_scoring_runs", status="failed") == 1
    assert value(parsed, "solstake_scoring_run_completion_ratio") == pytest.approx(0.5)
    assert value(parsed, "solstake_scoring_coverage_ratio") == pytest.approx(5 / 6)
    assert 35 <= value(parsed, "solstake_data_freshness_seconds") <= 600  # completed 40 s before seeding
    expected_buckets = {"10.0": 1, "20.0": 2, "50.0": 2, "60.0": 3, "90.0": 3, "100.0": 5, "+Inf": 5}
    for le, count in expected_buckets.items():
        assert value(parsed, "solstake_validator_trust_score_bucket", le=le) == count, le
    assert value(parsed, "solstake_validator_trust_score_count") == 5
    assert value(parsed, "solstake_validator_trust_score_sum") == pytest.approx(270.0)


async def test_business_gauges_report_down_instead_of_blocking_when_the_database_fails(
    web: TestClient, db_pool: asyncpg.Pool, database_url: str
) -> None:
    # Drop a table the collector reads: the scrape still answers, saying the business read failed.
    from http_app import metrics as web_metrics

    web_metrics.BUSINESS.snapshot = None
    async with db_pool.acquire() as conn:
        await conn.execute("ALTER TABLE validators RENAME TO validators_gone")
    parsed = samples(await scrape(web))
    assert value(parsed, "solstake_business_metrics_up") == 0
    assert ("solstake_validators", ()) not in parsed


async def test_metrics_token_guards_the_exposition(make_client: MakeClient, ops_settings: Settings) -> None:
    client = await make_client(
        create_app(ops_settings.with_overrides(metrics_token="scrape-" + "s" * 30), schema_name="ops-token"))
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    text = await scrape(client, Authorization="Bearer scrape-" + "s" * 30)
    assert "solstake_build_info" in text


async def test_request_logs_carry_the_request_id(web: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="http_app.access")  # routine requests log at debug
    resp = await web.get("/no/such/path", headers={"X-Request-Id": "req-abc-123"})
    assert resp.headers["X-Request-Id"] == "req-abc-123"
    lines = [r for r in caplog.records if r.name == "http_app.access"]
    assert lines, "no access log line"
    record = lines[-1]
    assert getattr(record, "request_id", None) == "req-abc-123"
    assert getattr(record, "status", None) == 404
    assert getattr(record, "route", None) == "unmatched"



async def test_rate_limit_rejections_and_auth_failures_are_counted(
    make_client: MakeClient, ops_settings: Settings
) -> None:
    client = await make_client(create_app(ops_settings.with_overrides(rate_limit=3), schema_name="ops-limit"))

    def total(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
        return sum(v for (n, _labels), v in parsed.items() if n == name)

    def count(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], code: str) -> float:
        return value(parsed, "solstake_http_requests_total", method="POST", route="/graphql", code=code)

    before = samples(await scrape(client))
    query = {"query": "{ __typename }"}
    bad = await client.post("/graphql", json=query, headers={"Authorization": "Bearer not.a.token"})
    codes = [bad.status] + [(await client.post("/graphql", json=query)).status for _ in range(3)]
    assert codes == [401, 200, 200, 429], codes
    after = samples(await scrape(client))
    assert total(after, "solstake_auth_failures_total") - total(before, "solstake_auth_failures_total") == 1
    assert total(after, "solstake_ratelimit_rejections_total") - total(before, "solstake_ratelimit_rejections_total") \
        == 1
    for code, n in (("401", 1), ("200", 2), ("429", 1)):
        assert count(after, code) - count(before, code) == n, code


async def test_websocket_sessions_are_gauged_while_open(web: TestClient) -> None:
    before = samples(await scrape(web))
    ws = await web.ws_connect("/graphql", protocols=["graphql-transport-ws"])
    await ws.send_json({"type": "connection_init", "payload": {}})
    ack = await ws.receive_json(timeout=5)
    assert ack["type"] == "connection_ack"
    during = samples(await scrape(web))
    await ws.close()
    assert value(during, "solstake_ws_connections_active") - value(before, "solstake_ws_connections_active") == 1
    assert (value(during, "solstake_ws_connections_total", protocol="graphql-transport-ws")
            - value(before, "solstake_ws_connections_total", protocol="graphql-transport-ws")) == 1
    assert value(during, "solstake_http_requests_in_flight") == 1  # only the scrape: sessions are apart
    for _ in range(50):
        after = samples(await scrape(web))
        if value(after, "solstake_ws_connections_active") == value(before, "solstake_ws_connections_active"):
            break
        await asyncio.sleep(0.05)
    assert value(after, "solstake_ws_connections_active") == value(before, "solstake_ws_connections_active")
    for code, n in (("101", 1), ("500", 0)):  # a session the client closed is not a server error
        assert (value(after, "solstake_http_requests_total", method="GET", route="/graphql", code=code)
                - value(before, "solstake_http_requests_total", method="GET", route="/graphql", code=code)) == n


async def test_no_token_reaches_the_logs(web: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    from stream_app.logs import JsonFormatter

    caplog.set_level(logging.DEBUG)
    secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhdHRhY2tlciJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
    for path in ("/graphql", "/health", "/metrics", "/no/such/path"):
        await web.get(path, headers={"Authorization": f"Bearer {secret}", "X-Request-Id": "tok-test"})
    await web.post("/graphql", json={"query": "{ __typename }"}, headers={"Authorization": f"Bearer {secret}"})
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(r) for r in caplog.records)
    assert caplog.records, "nothing was logged at debug"
    assert secret not in text and secret.split(".")[2] not in text
    raw = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert secret.split(".")[2] not in raw  # not even before the formatter's masking
