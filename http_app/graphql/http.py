"""GraphQL over HTTP (graphql-over-http draft): POST JSON, GET for queries, media-type negotiation.

Fast path first: a cached answer for the same (scope, query text, operation, variables) is returned
before anything is parsed. What the handler derives from a request's raw bytes (body or query string,
Content-Type and Accept: media type, query, operation, canonical variables) is remembered per raw request
(`_Plans`), so a repeated request goes straight to the cache lookup; a miss there takes the full path.
Everything else is analysed (limits, validation) once per query text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from http_app.cache import Entry, LocalKey, ResponseCache, WarmSpec, canonical_variables
from http_app.graphql.errors import (
    BAD_REQUEST,
    INTERNAL,
    INTROSPECTION_DISABLED,
    OPERATION_RESOLUTION_FAILURE,
    TIMEOUT,
    error_body,
)
from http_app.graphql.limits import MAX_BODY_BYTES, OPERATION_TIMEOUT, analyze
from http_app.graphql.loaders import Loaders
from http_app.keys import CACHE, DB_POOL, EXECUTOR, LIVE_HUB, SETTINGS
from http_app.metrics import GRAPHQL_OPERATION, GRAPHQL_REQUESTS, GRAPHQL_SECONDS
from http_app.principal import ANONYMOUS, Principal
from http_app.security import SecuredResponse, all_security_headers

log = logging.getLogger("http_app.graphql")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
_CONTENT_TYPES = {GRAPHQL_RESPONSE: GRAPHQL_RESPONSE + "; charset=utf-8", JSON: JSON + "; charset=utf-8"}
_VARY = "Accept, Accept-Encoding, Authorization"
_LOCAL_SECONDS = GRAPHQL_SECONDS("local")  # the hot path: resolve the histogram once
# The headers of a local-cache answer, by (media type, stale, gzip, production), security headers included
# (the answer is a SecuredResponse): built once, not per request (aiohttp copies a CIMultiDict cheaply).
_HIT_HEADERS: dict[tuple[str, bool, bool, bool], CIMultiDict[str]] = {
    (media, stale, gz, production): CIMultiDict({
        "Content-Type": _CONTENT_TYPES[media], "Vary": _VARY, "X-Cache": "STALE" if stale else "HIT-LOCAL",
        **({"Content-Encoding": "gzip"} if gz else {}), **all_security_headers(production)})
    for media in (GRAPHQL_RESPONSE, JSON) for stale in (False, True) for gz in (False, True)
    for production in (False, True)
}
# Raw requests whose plan is remembered: bodies up to this size (hot queries are short).
PLAN_MAX_BODY = 8 * 1024
PLAN_MAX_ENTRIES = 512
PLAN_MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the handler derived from one raw request, up to the cache lookup (all pure functions of it)."""

    media: str
    query: str
    operation_name: str | None
    variables_key: bytes
    public_key: LocalKey | None  # the cache key when the answer is the same for every caller


RawKey = tuple[Any, ...]  # (raw query string, Accept) for GET; (body, Content-Type, Accept) for POST


class _Plans:
    """A bounded map raw request → _Plan; emptied when full (a hostile stream of distinct requests only
    costs the fast path, never memory or correctness: every plan is recomputed from its own key)."""

    def __init__(self) -> None:
        self._plans: dict[RawKey, _Plan] = {}
        self._bytes = 0

    def get(self, key: RawKey) -> _Plan | None:
        return self._plans.get(key)

    def put(self, key: RawKey, plan: _Plan) -> None:
        if key in self._plans:
            return
        size = sum(len(part or "") for part in key) + len(plan.query) + len(plan.variables_key)
        if len(self._plans) >= PLAN_MAX_ENTRIES or self._bytes + size > PLAN_MAX_BYTES:
            self._plans.clear()
            self._bytes = 0
        self._plans[key] = plan
        self._bytes += size

    def clear(self) -> None:
        self._plans.clear()
        self._bytes = 0


PLANS = _Plans()


class RequestError(Exception):
    """A request that fails before execution: answered with `status` and one coded error."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None,
                 messages: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}
        self.messages = messages or (message,)


@lru_cache(maxsize=256)
def negotiate(accept: str) -> str | None:
    """The response media type for an Accept header; None when we can serve nothing it accepts."""
    if not accept.strip():
        return GRAPHQL_RESPONSE
    best: tuple[float, int, str] | None = None
    preference = {GRAPHQL_RESPONSE: 0, JSON: 1, "application/*": 2, "*/*": 2}
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        if media not in preference:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        candidate = (-q, preference[media], media)
        if best is None or candidate < best:
            best = candidate
    if best is None:
        return None
    return JSON if best[2] == JSON else GRAPHQL_RESPONSE


def _accepts_gzip(request: web.Request) -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "")


def respond(request: web.Request, media: str, body: bytes, gz: bytes | None, status: int = 200,
            cache_state: str | None = None, extra: dict[str, str] | None = None) -> web.Response:
    headers = {"Content-Type": _CONTENT_TYPES[media], "Vary": _VARY}
    if cache_state is not None:
        headers["X-Cache"] = cache_state
    if extra:
        headers.update(extra)
    if gz is not None and _accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        body = gz
    return web.Response(body=body, status=status, headers=headers)


def error_response(request: web.Request, media: str, err: RequestError) -> web.Response:
    errors = [error_body(m, err.code) for m in err.messages]
    # With application/json every well-formed request gets 200 (legacy clients); malformed ones 4xx.
    status = err.status
    if media == JSON and err.code not in (BAD_REQUEST,) and status == 400:
        status = 200
    GRAPHQL_REQUESTS.labels("unknown", err.code).inc()
    return respond(request, media, orjson.dumps({"errors": errors}), None, status, extra=err.headers)


async def read_params(request: web.Request) -> dict[str, Any]:
    if request.method == "GET":
        params: dict[str, Any] = {k: request.query.get(k) for k in ("query", "operationName")}
        for key in ("variables", "extensions"):
            encoded = request.query.get(key)
            if encoded:
                try:
                    params[key] = orjson.loads(encoded)
                except orjson.JSONDecodeError:
                    raise RequestError(400, f"`{key}` is not valid JSON", BAD_REQUEST) from None
        return params
    if request.content_type != "application/json":
        raise RequestError(415, "POST bodies must be application/json", BAD_REQUEST)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise RequestError(413, f"Request body exceeds {MAX_BODY_BYTES} bytes", BAD_REQUEST)
    body = await _read_limited(request)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError(400, "Request body is not valid JSON", BAD_REQUEST) from None
    if isinstance(parsed, list):
        raise RequestError(400, "Batched requests (JSON arrays) are not supported; send one operation",
                           BAD_REQUEST)
    if not isinstance(parsed, dict):
        raise RequestError(400, "Request body must be a JSON object", BAD_REQUEST)
    return parsed


async def _read_limited(request: web.Request) -> bytes:
    if request.content_length is not None:  # size already checked against the limit: one read
        return await request.read()
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError(413, f"Request body exceeds {MAX_BODY_BYTES} bytes", BAD_REQUEST)
        chunks.append(chunk)


def check_params(params: dict[str, Any]) -> tuple[str, str | None, dict[str, Any] | None]:
    query = params.get("query")
    operation_name = params.get("operationName")
    variables = params.get("variables")
    if not isinstance(query, str) or not query.strip():
        persisted = isinstance(params.get("extensions"), dict) and "persistedQuery" in params["extensions"]
        if persisted:
            raise RequestError(400, "Persisted queries are not supported", "PERSISTED_QUERY_NOT_SUPPORTED")
        raise RequestError(400, "`query` must be a non-empty string", BAD_REQUEST)
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError(400, "`operationName` must be a string", BAD_REQUEST)
    if variables is not None and not isinstance(variables, dict):
        raise RequestError(400, "`variables` must be an object", BAD_REQUEST)
    if "extensions" in params and params["extensions"] is not None and not isinstance(params["extensions"], dict):
        raise RequestError(400, "`extensions` must be an object", BAD_REQUEST)
    return query, operation_name or None, variables


def context_for(app: web.Application, principal: Principal, request_id: str | None = None) -> dict[str, Any]:
    return {
        "principal": principal,
        "pool": app[DB_POOL],
        "cache": app[CACHE],
        "hub": app.get(LIVE_HUB),
        "loaders": Loaders(),
        "app": app,
        "request_id": request_id,
    }


async def execute(app: web.Application, query: str, operation_name: str | None,
                  variables: dict[str, Any] | None, context: dict[str, Any]) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(
            app[EXECUTOR].execute(query, operation_name, variables, context), OPERATION_TIMEOUT
        )
    except TimeoutError:
        return {"data": None, "errors": [error_body(f"Operation exceeded {OPERATION_TIMEOUT:.0f}s", TIMEOUT)]}


def is_request_error(result: dict[str, Any]) -> bool:
    """Failed before execution (variable coercion, validation): no data and no error has a path."""
    errors = result.get("errors") or []
    return bool(errors) and result.get("data") is None and not any(e.get("path") for e in errors)


def _cached_answer(request: web.Request, plan: _Plan, started: float) -> web.Response | None:
    """The local tier's answer for a known raw request (exactly what the full path would answer), or None."""
    key = plan.public_key
    if key is None:
        principal: Principal = request.get("principal", ANONYMOUS)
        key = (principal.scope, plan.query, plan.operation_name, plan.variables_key)
    cache = request.app[CACHE]
    entry = cache.get_local(key)
    if entry is None:
        return None
    _LOCAL_SECONDS.observe(time.perf_counter() - started)
    gz = entry.gz is not None and "gzip" in request.headers.get("Accept-Encoding", "")
    headers = _HIT_HEADERS[plan.media, entry.stale, gz, cache.production]
    return SecuredResponse(body=entry.gz if gz else entry.body, headers=headers)


async def graphql_http(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    accept = request.headers.get("Accept", "")
    raw: RawKey | None
    # The raw inputs (bodies only when small enough to remember; the full path reads the body again from memory).
    if request.method == "GET":
        raw = (request.rel_url.raw_query_string, accept)
    else:
        length = request.content_length
        raw = None if length is None or length > PLAN_MAX_BODY else (
            await request.read(), request.headers.get("Content-Type"), accept)
    if raw is not None:
        plan = PLANS.get(raw)
        if plan is not None:
            answer = _cached_answer(request, plan, started)
            if answer is not None:
                return answer
    media = negotiate(accept)
    if media is None:
        return web.json_response({"errors": [error_body("Cannot produce any media type in Accept; use "
                                                        f"{GRAPHQL_RESPONSE} or {JSON}", BAD_REQUEST)]},
                                 status=406)
    try:
        query, operation_name, variables = check_params(await read_params(request))
    except RequestError as err:
        return error_response(request, media, err)
    app = request.app
    cache = app[CACHE]
    principal: Principal = request.get("principal", ANONYMOUS)
    variables_key = canonical_variables(variables)
    # Public data is the same for every caller: signed-in readers share (and warm) the public entry.
    public = analyze(query).public
    scope = "public" if public else principal.scope
    local_key: LocalKey = (scope, query, operation_name, variables_key)
    if raw is not None:
        PLANS.put(raw, _Plan(media, query, operation_name, variables_key, local_key if public else None))

    entry = cache.get_local(local_key)
    if entry is not None:
        _LOCAL_SECONDS.observe(time.perf_counter() - started)
        return respond(request, media, entry.body, entry.gz, cache_state="STALE" if entry.stale else "HIT-LOCAL")
    try:
        operation = admit(request, principal, query, operation_name)
    except RequestError as err:
        return error_response(request, media, err)
    request[GRAPHQL_OPERATION] = operation  # RED metrics: duration by operation type

    cacheable = operation == "query" and analyze(query).cacheable
    redis_key = ""
    if cacheable:
        redis_key = cache.redis_key(scope, operation_name, analyze(query).normalized, variables_key)
        entry = await cache.get_shared(local_key, redis_key)
        if entry is not None:
            GRAPHQL_SECONDS("redis").observe(time.perf_counter() - started)
            return respond(request, media, entry.body, entry.gz, cache_state="HIT")
        cache.count_miss()
        under_way = cache.join(local_key)
        if under_way is not None:  # the same answer is being rendered for another reader: share it
            entry = await asyncio.shield(under_way)
            if entry is not None:
                return respond(request, media, entry.body, entry.gz, cache_state="MISS-SHARED")
        else:
            try:
                return await _render(request, media, principal, query, operation_name, variables, local_key,
                                     redis_key, operation, started)
            finally:
                cache.done(local_key, cache.peek(local_key))
    return await _render(request, media, principal, query, operation_name, variables, local_key, redis_key,
                         operation, started, cacheable=cacheable)


async def _render(request: web.Request, media: str, principal: Principal, query: str, operation_name: str | None,
                  variables: dict[str, Any] | None, local_key: LocalKey, redis_key: str, operation: str,
                  started: float, cacheable: bool = True) -> web.StreamResponse:
    """Execute, encode, and (for a cacheable success) store the answer."""
    app = request.app
    cache = app[CACHE]

    generation = cache.generation
    context = context_for(app, principal, request.get("request_id"))
    try:
        result = await execute(app, query, operation_name, variables, context)
    except Exception:
        log.exception("GraphQL execution failed (request %s)", request.get("request_id"))
        body = orjson.dumps({"data": None, "errors": [error_body("Internal server error", INTERNAL)]})
        return respond(request, media, body, None, 500)
    body = orjson.dumps(result)
    errors = result.get("errors")
    GRAPHQL_REQUESTS.labels(operation, "error" if errors else "ok").inc()
    GRAPHQL_SECONDS("no").observe(time.perf_counter() - started)
    if is_request_error(result):
        return respond(request, media, body, None, 400 if media == GRAPHQL_RESPONSE else 200)
    if cacheable and not errors:
        warm = None
        if local_key[0] == "public":
            warm = WarmSpec(query, operation_name, variables, analyze(query).normalized, local_key)
        stored: Entry | None = await cache.put(local_key, redis_key, body, generation, warm)
        if stored is not None:
            return respond(request, media, stored.body, stored.gz, cache_state="MISS")
    return respond(request, media, body, None, cache_state="MISS" if cacheable else None)


def admit(request: web.Request, principal: Principal, query: str, operation_name: str | None) -> str:
    """Limits, validation and operation selection; returns the operation type or raises RequestError."""
    analysis = analyze(query)
    settings = request.app[SETTINGS]
    if analysis.problem is not None:
        messages = analysis.problem.messages
        if settings.production and not principal.is_admin and analysis.suggestions_stripped:
            messages = analysis.suggestions_stripped  # no "Did you mean" schema hints in production
        raise RequestError(400, messages[0], analysis.problem.code, messages=messages)
    operation = analysis.operation_type(operation_name)
    if operation is None:
        what = f"No operation named {operation_name!r}" if operation_name else "Several operations: name one"
        raise RequestError(400, what, OPERATION_RESOLUTION_FAILURE)
    if request.method == "GET" and operation != "query":
        raise RequestError(405, f"A {operation} cannot be sent with GET; use POST", BAD_REQUEST,
                           headers={"Allow": "POST"})
    if operation == "subscription":
        raise RequestError(400, "Subscriptions are served over WebSocket at /graphql", BAD_REQUEST)
    if analysis.introspection and settings.production and not principal.is_admin:
        raise RequestError(400, "Introspection is disabled", INTROSPECTION_DISABLED)
    return operation


def make_renderer(app: web.Application) -> Any:
    """Cache warming: render a public query as an anonymous caller would see it."""

    async def render(spec: WarmSpec) -> bytes | None:
        result = await execute(app, spec.query, spec.operation_name, spec.variables, context_for(app, ANONYMOUS))
        return None if result.get("errors") else orjson.dumps(result)

    return render


def install_renderer(app: web.Application, cache: ResponseCache) -> None:
    cache.renderer = make_renderer(app)
