"""Every Prometheus metric of the web process, the RED middleware and `GET /metrics`.

RED: `solstake_http_requests_total{method,route,code}` and `solstake_http_request_duration_seconds{method,route}`
for every request (route = the matched route template, never the raw path), GraphQL operations by type and
outcome, cache lookups, WebSocket connections and live subscriptions. Access-control counters (rate-limit
rejections, auth failures) live in `http_app.access_metrics` and are exposed here too. The business gauges
(validator count, freshness, completion rate, coverage, score distribution) are read from PostgreSQL at
scrape time under a 1 s timeout and cached for 15 s (`stream_app.business`).

The middleware also puts the request id on every log line written while a request is handled.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

import http_app.access_metrics  # noqa: F401  (registers the access-control counters in this registry)
from http_app.keys import DB_POOL, LIVE_HUB, SETTINGS
from http_app.red import RedRecorder
from stream_app.business import BusinessCollector
from stream_app.metrics_shared import FAST_BUCKETS, exposition, track_pool

log = logging.getLogger("http_app.metrics")
access_log = logging.getLogger("http_app.access")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
QUIET_ROUTES = frozenset({"/metrics", "/health", "/healthz", "/readyz", "/health/db", "/health/redis",
                          "/health/solana"})

# solstake_http_requests_total, solstake_http_request_duration_seconds, solstake_http_requests_in_flight,
# solstake_graphql_operation_duration_seconds and solstake_ws_connections_active: updated per request on
# plain numbers (http_app.red), a fraction of prometheus-client's per-call locking and label validation.
RED = RedRecorder(FAST_BUCKETS)
REGISTRY.register(RED)

GRAPHQL_REQUESTS = Counter(
    "solstake_graphql_requests_total",
    "GraphQL operations answered over HTTP, by operation type (query, mutation, subscription, unknown) and "
    "outcome (ok, error, or the error code of a request refused before execution).",
    ["operation", "outcome"],
)
# solstake_graphql_request_seconds{cached} and solstake_cache_lookups_total{tier,result} are on RED too.
GRAPHQL_SECONDS = RED.answer_histogram
CACHE_LOOKUP = RED.cache_lookup
WS_CONNECTIONS = Counter(
    "solstake_ws_connections_total",
    "WebSocket connections accepted on /graphql, by subprotocol (graphql-transport-ws or graphql-ws).",
    ["protocol"],
)
SUBSCRIPTIONS_ACTIVE = Gauge(
    "solstake_graphql_subscriptions_active",
    "GraphQL subscriptions (live-update listeners) active right now in this process.",
)
SCRAPE_SECONDS = Histogram(
    "solstake_metrics_scrape_duration_seconds",
    "Time to build the /metrics answer, including the bounded refresh of the business gauges.",
    buckets=FAST_BUCKETS,
)

BUSINESS = BusinessCollector(max_age=15.0, timeout=1.0)
REGISTRY.register(BUSINESS)

# Set by the GraphQL handler once it knows the operation type, for the duration-by-type histogram.
GRAPHQL_OPERATION: web.RequestKey[str] = web.RequestKey("graphql_operation", str)

# The id of the request being handled, for log lines (see `install_request_id_logging`).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


_ROUTE_NAMES: dict[AbstractRoute, str] = {}  # route → its template (routes are few and live as long as the app)


def route_of(request: web.Request) -> str:
    route = request.match_info.route
    name = _ROUTE_NAMES.get(route)
    if name is None:
        resource = route.resource
        if resource is None:  # a system route (404/405), made per request: not remembered
            return "unmatched"
        if len(_ROUTE_NAMES) >= 4096:  # apps come and go in tests
            _ROUTE_NAMES.clear()
        name = _ROUTE_NAMES[route] = resource.canonical
    return name


_CACHED_STATES = frozenset({"HIT-LOCAL", "HIT", "STALE", "MISS-SHARED"})  # answers read from the cache


def graphql_operation(request: web.Request, response: web.StreamResponse | None) -> str:
    if response is not None and response.headers.get("X-Cache") in _CACHED_STATES:
        return "query"  # only queries are ever cached (and a cached answer's handler sets no operation)
    given = request.get(GRAPHQL_OPERATION)
    if isinstance(given, str) and given in ("query", "mutation", "subscription"):
        return given
    return "unknown"


SLOW_REQUEST = 1.0  # seconds; slower requests get an info line even when access lines are at debug


@web.middleware
async def red_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count, time and log every request; sits just inside the request-id middleware."""
    token = REQUEST_ID.set(request.get("request_id"))
    started = time.perf_counter()
    method = request.method if request.method in METHODS else "OTHER"
    route = route_of(request)
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    status = 500
    response: web.StreamResponse | None = None
    if websocket:
        RED.ws_active += 1
    else:
        RED.in_flight += 1
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client goes away (a closed WebSocket, an abandoned request):
        # not a server error. 101 = the WebSocket session that was open; 499 = "client closed request".
        status = 101 if websocket else 499
        raise
    finally:
        request_finished(request, response, method, route, status, started, websocket)
        REQUEST_ID.reset(token)


def request_finished(request: web.Request, response: web.StreamResponse | None, method: str, route: str,
                     status: int, started: float, websocket: bool) -> None:
    """RED bookkeeping and the access line of a request that ended (both middlewares' last step)."""
    elapsed = time.perf_counter() - started
    if websocket:
        RED.ws_active -= 1
        RED.request_done(method, route, status, None)
    else:
        RED.in_flight -= 1
        RED.request_done(method, route, status, elapsed)
        if route == "/graphql":
            RED.graphql_done(graphql_operation(request, response), elapsed)
    # The level test here, not only in log_request: a routine answer then costs no call (hot cached path).
    if (status >= 500 or (elapsed >= SLOW_REQUEST and not websocket and route not in QUIET_ROUTES)
            or access_log.isEnabledFor(logging.DEBUG)):
        log_request(request, route, status, elapsed, websocket)


def log_request(request: web.Request, route: str, status: int, elapsed: float, websocket: bool) -> None:
    # One line per request costs more than the request itself on the hot path (~0.1-0.2 ms of
    # formatting): routine requests log at debug; server errors and slow requests always do.
    if status >= 500:
        level = logging.WARNING
    elif elapsed >= SLOW_REQUEST and not websocket and route not in QUIET_ROUTES:
        level = logging.INFO
    else:
        level = logging.DEBUG
    if access_log.isEnabledFor(level):
        access_log.log(level, "%s %s %d %.1f ms", request.method, route, status, elapsed * 1000,
                       extra={"method": request.method, "route": route, "status": status,
                              "duration_ms": round(elapsed * 1000, 2)})


_factory_installed = False


def install_request_id_logging() -> None:
    """Every log record created while a request is handled gets a `request_id` attribute (a JSON key)."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        request_id = REQUEST_ID.get()
        if request_id is not None and not hasattr(record, "request_id"):
            setattr(record, "request_id", request_id)  # noqa: B010
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def _authorized(request: web.Request) -> bool:
    token = request.app[SETTINGS].metrics_token
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus exposition of this process (bearer-protected when METRICS_TOKEN is set)."""
    if not _authorized(request):
        return web.json_response({"error": "metrics need the scrape token"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    started = time.perf_counter()
    app = request.app
    pool = app.get(DB_POOL)
    if pool is not None:
        track_pool(pool)
        await BUSINESS.refresh(pool)
    hub = app.get(LIVE_HUB)
    if hub is not None:
        SUBSCRIPTIONS_ACTIVE.set(hub.subscriber_count)
    SCRAPE_SECONDS.observe(time.perf_counter() - started)
    body, content_type = exposition(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": content_type})


def setup_metrics(app: web.Application, *, middleware: bool = True) -> None:
    """Route `/metrics` and install the RED middleware right inside the request-id middleware
    (`middleware=False`: the app's own middleware records RED, as `http_app.front.front_door` does)."""
    from http_app.errors import request_id_and_errors

    app.router.add_get("/metrics", metrics)
    install_request_id_logging()
    if not middleware:
        return
    position = 0
    for index, installed in enumerate(app.middlewares):
        if installed is request_id_and_errors:
            position = index + 1
    if red_middleware not in app.middlewares:
        app.middlewares.insert(position, red_middleware)
