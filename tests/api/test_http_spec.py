"""GraphQL over HTTP as the spec says: methods, media types, status codes, error codes, limits."""

from __future__ import annotations

import gzip

import orjson
import pytest
from aiohttp.test_utils import TestClient

from http_app.graphql.errors import coerce_error
from http_app.graphql.limits import MAX_ALIASES, MAX_BODY_BYTES, MAX_DEPTH, MAX_ROOT_FIELDS, MAX_TOKENS
from tests.api.conftest import gql
from tests.api.seed import Seeded

GRAPHQL_RESPONSE = "application/graphql-response+json"


def codes(body: dict) -> list[str]:
    return [e["extensions"]["code"] for e in body["errors"]]


async def test_get_query_default_media_type(api: TestClient, seeded: Seeded) -> None:
    resp = await api.get("/graphql", params={"query": "{ validators { voteAccount } }"})
    assert resp.status == 200
    assert resp.content_type == GRAPHQL_RESPONSE
    body = await resp.json(content_type=None)
    assert len(body["data"]["validators"]) == len(seeded.vote_accounts)


async def test_json_on_request(api: TestClient, seeded: Seeded) -> None:
    resp = await api.post("/graphql", json={"query": "{ validators { id } }"}, headers={"Accept": "application/json"})
    assert resp.status == 200 and resp.content_type == "application/json"


async def test_unacceptable_media_type_is_406(api: TestClient) -> None:
    resp = await api.post("/graphql", json={"query": "{ validators { id } }"}, headers={"Accept": "text/csv"})
    assert resp.status == 406


async def test_mutation_over_get_is_405(api: TestClient) -> None:
    resp = await api.get("/graphql", params={"query": "mutation { clearCache { success } }"})
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert codes(await resp.json(content_type=None)) == ["BAD_REQUEST"]


async def test_bad_json_is_400(api: TestClient) -> None:
    resp = await api.post("/graphql", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert codes(await resp.json(content_type=None)) == ["BAD_REQUEST"]


async def test_non_json_content_type_is_415(api: TestClient) -> None:
    resp = await api.post("/graphql", data=b"query=%7Bvalidators%7Bid%7D%7D",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 415


async def test_batching_refused(api: TestClient) -> None:
    resp = await api.post("/graphql", json=[{"query": "{ validators { id } }"}] * 2)
    assert resp.status == 400
    body = await resp.json(content_type=None)
    assert codes(body) == ["BAD_REQUEST"] and "Batched" in body["errors"][0]["message"]


async def test_unknown_field_is_400_validation_failed(api: TestClient) -> None:
    status, body = await gql(api, "{ validators { id secretColumn } }")
    assert status == 400
    assert "data" not in body
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_validation_failure_with_legacy_json_is_200(api: TestClient) -> None:
    resp = await api.post("/graphql", json={"query": "{ nope }"}, headers={"Accept": "application/json"})
    assert resp.status == 200
    assert codes(await resp.json()) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_parse_error_is_400(api: TestClient) -> None:
    status, body = await gql(api, "{ validators { id ")
    assert status == 400 and codes(body) == ["GRAPHQL_PARSE_FAILED"]


async def test_missing_query_is_400(api: TestClient) -> None:
    resp = await api.post("/graphql", json={"variables": {}})
    assert resp.status == 400 and codes(await resp.json(content_type=None)) == ["BAD_REQUEST"]


async def test_operation_selection(api: TestClient, seeded: Seeded) -> None:
    doc = "query A { validators { id } } query B { validator(voteAccount: \"x\") { id } }"
    status, body = await gql(api, doc)
    assert status == 400 and codes(body) == ["OPERATION_RESOLUTION_FAILURE"]
    resp = await api.post("/graphql", json={"query": doc, "operationName": "B"})
    assert resp.status == 200 and (await resp.json(content_type=None))["data"] == {"validator": None}


async def test_bad_variable_is_400_bad_user_input(api: TestClient) -> None:
    status, body = await gql(api, "query($v: String!) { validator(voteAccount: $v) { id } }", {"v": 12})
    assert status == 400
    assert set(codes(body)) == {"BAD_USER_INPUT"}


async def test_page_size_capped(api: TestClient, seeded: Seeded) -> None:
    status, body = await gql(api, "{ validatorsConnection(first: 101) { totalCount } }")
    assert status == 200  # executed: the error has a path
    assert body["data"] is None and codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["validatorsConnection"]


async def test_depth_limit(api: TestClient) -> None:
    # validators > latestTrustScore > validator > latestTrustScore > validator > latestTrustScore > id = 7
    deep = ("{ validators { latestTrustScore { validator { latestTrustScore { validator { latestTrustScore"
            " { id } } } } } } }")
    status, body = await gql(api, deep)
    assert status == 400 and codes(body) == ["QUERY_TOO_COMPLEX"]
    assert f"limit of {MAX_DEPTH}" in body["errors"][0]["message"]
    ok = "{ validators { latestTrustScore { validator { latestTrustScore { validator { id } } } } } }"
    assert (await gql(api, ok))[0] == 200


async def test_alias_limit(api: TestClient) -> None:
    aliases = " ".join(f"a{i}: id" for i in range(MAX_ALIASES + 1))
    status, body = await gql(api, f"{{ validators {{ {aliases} }} }}")
    assert status == 400 and codes(body) == ["QUERY_TOO_COMPLEX"]


async def test_root_field_limit(api: TestClient) -> None:
    roots = " ".join(f"r{i}: validator(voteAccount: \"x{i}\") {{ id }}" for i in range(MAX_ROOT_FIELDS + 1))
    status, body = await gql(api, f"{{ {roots} }}")
    assert status == 400 and codes(body) == ["QUERY_TOO_COMPLEX"]


async def test_token_limit(api: TestClient) -> None:
    fields = " ".join(["id"] * (MAX_TOKENS + 10))
    status, body = await gql(api, f"{{ validators {{ {fields} }} }}")
    assert status == 400 and codes(body) == ["QUERY_TOO_COMPLEX"]


async def test_body_limit(api: TestClient) -> None:
    resp = await api.post("/graphql", data=b'{"query": "' + b" " * MAX_BODY_BYTES + b'{ validators { id } }"}',
                          headers={"Content-Type": "application/json"})
    assert resp.status == 413


async def test_subscription_over_http_refused(api: TestClient) -> None:
    status, body = await gql(api, "subscription { scoringRunCompleted { version } }")
    assert status == 400 and codes(body) == ["BAD_REQUEST"]


async def test_introspection_allowed_in_development(api: TestClient) -> None:
    status, body = await gql(api, "{ __schema { queryType { name } } }")
    assert status == 200 and body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_introspection_and_graphiql_off_in_production(make_api, seeded: Seeded) -> None:  # type: ignore[no-untyped-def]
    client = await make_api(profile="production")
    status, body = await gql(client, "{ __schema { queryType { name } } }")
    assert status == 400 and codes(body) == ["INTROSPECTION_DISABLED"]
    status, body = await gql(client, "{ validators { nam } }")
    assert status == 400 and "Did you mean" not in body["errors"][0]["message"]
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status == 404


async def test_graphiql_page_in_development(api: TestClient) -> None:
    page = await api.get("/graphql", headers={"Accept": "text/html"})
    assert page.status == 200
    assert "graphiql" in (await page.text()).lower()
    policy = page.headers["Content-Security-Policy"]
    assert "script-src https://unpkg.com 'sha256-" in policy and "'unsafe-eval'" not in policy


async def test_unexpected_exception_is_masked() -> None:
    from tartiflette.types.exceptions.tartiflette import TartifletteError

    raw = TartifletteError("relation secret_table does not exist", path=["validators"],
                           original_error=KeyError("internal detail"))
    coerced = await coerce_error(raw, raw.coerce_value())
    assert coerced["message"] == "Internal server error"
    assert coerced["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "secret" not in orjson.dumps(coerced).decode()


async def test_gzip_when_accepted(api: TestClient, seeded: Seeded) -> None:
    query = {"query": "{ validators { id voteAccount validatorPubkey name commission uptime } }"}
    plain = await (await api.post("/graphql", json=query)).read()
    resp = await api.post("/graphql", json=query, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(await resp.read()) == plain


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_other_methods_405(api: TestClient, method: str) -> None:
    resp = await api.request(method, "/graphql")
    assert resp.status == 405
