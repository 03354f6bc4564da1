"""GraphQL fuzzing of /graphql from our own SDL (hypothesis-graphql), over real HTTP to create_app.

Valid queries and mutations (every field, argument and input the schema has, with random values, aliases
and fragments) and invalid documents (hypothesis-graphql's negative mode), sent as anonymous, user and
admin callers. Every answer: no 5xx, JSON, no stack trace or internal detail, every error carries an
`extensions.code`, and the page-size limit holds in whatever data comes back.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from http_app.app import create_app
from stream_app.settings import Settings
from tests.api.conftest import bearer
from tests.api.seed import seed

SDL = (Path(__file__).resolve().parents[2] / "http_app" / "graphql" / "schema.graphql").read_text()
LEAKS = ("Traceback", 'File "', "asyncpg", "psycopg", "tartiflette.", "/work/", "site-packages", "SELECT ")
MAX_PAGE = 100


def _check(status: int, body: bytes, document: str) -> None:
    where = f"\n--- document ---\n{document}\n--- answer ({status}) ---\n{body[:2000]!r}"
    assert status < 500, where
    text = body.decode()
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked{where}"
    answer = json.loads(text)
    assert isinstance(answer, dict) and ("data" in answer or "errors" in answer), where
    for error in answer.get("errors") or []:
        assert isinstance(error.get("message"), str), where
        assert isinstance((error.get("extensions") or {}).get("code"), str), f"error without a code{where}"
    _check_pages(answer.get("data"), where)


def _check_pages(node: Any, where: str) -> None:
    if isinstance(node, dict):
        for key, child in node.items():
            if key == "edges" and isinstance(child, list):
                assert len(child) <= MAX_PAGE, where
            _check_pages(child, where)
    elif isinstance(node, list):
        for child in node:
            _check_pages(child, where)


def _post(url: str, document: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps({"query": document}).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.timeout(240)
async def test_generated_documents_never_get_a_5xx_a_trace_or_an_uncoded_error(
    settings: Settings, db_pool: asyncpg.Pool
) -> None:
    await seed(db_pool, validators=20, runs=2, users=2)
    app_settings = settings.with_overrides(rate_limit=1_000_000, solana_rpc_urls=("http://127.0.0.1:9/",))
    server = TestServer(create_app(app_settings), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/graphql"))
    callers = st.sampled_from([{}, bearer(settings, "user", wallet="Vote" + "1" * 40), bearer(settings, "admin")])
    sent: list[int] = []
    examples = hyp_settings(deadline=None, database=None, derandomize=True,
                            suppress_health_check=list(HealthCheck))

    @hyp_settings(examples, max_examples=150)
    @given(document=queries(SDL), headers=callers)
    def valid_queries(document: str, headers: dict[str, str]) -> None:
        status, body = _post(url, document, headers)
        sent.append(status)
        _check(status, body, document)

    @hyp_settings(examples, max_examples=60)
    @given(document=mutations(SDL), headers=callers)
    def valid_mutations(document: str, headers: dict[str, str]) -> None:
        status, body = _post(url, document, headers)
        sent.append(status)
        _check(status, body, document)

    @hyp_settings(examples, max_examples=120)
    @given(document=queries(SDL, mode=Mode.NEGATIVE), headers=callers)
    def invalid_documents(document: str, headers: dict[str, str]) -> None:
        status, body = _post(url, document, headers)
        sent.append(status)
        assert status in (200, 400, 401, 403, 413), (status, document)
        _check(status, body, document)

    try:
        for fuzz in (valid_queries, valid_mutations, invalid_documents):
            await asyncio.to_thread(fuzz)
    finally:
        await server.close()
    print({s: sent.count(s) for s in sorted(set(sent))})
    assert len(sent) >= 300 and 200 in sent and 400 in sent, sorted(set(sent))
