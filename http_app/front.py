"""The app's one middleware: request id + error masking, RED metrics, rate limit, authentication.

The same steps, in the same order and with the same answers, as the four separate middlewares
(`errors.request_id_and_errors`, `metrics.red_middleware`, `ratelimit.rate_limit` + `auth.authenticate`,
merged in `access.access_control`), which stay for apps that compose them differently. One frame instead of
three, and the token check computed once and handed to both access-control steps: on a cached GraphQL
answer the per-middleware bookkeeping measured as the larger part of our cost above a bare handler.

    1. request id (X-Request-Id on every answer, raised HTTP errors included) and error masking (500 JSON)
    2. RED: count, time and (at debug, or when slow / failing) log every request
    3. rate limit: 429/503 refusals; X-RateLimit-* and RateLimit headers on every admitted answer
    4. authentication: request["principal"], or 401
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from http_app.auth import ACCESS_CONTROL, admit_principal
from http_app.errors import REQUEST_ID_HEADER, internal_error, request_id
from http_app.metrics import METHODS, RED, REQUEST_ID, graphql_operation, log_request, route_of
from http_app.ratelimit import count_and_judge


@web.middleware
async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id(request)
    request["request_id"] = rid
    token = REQUEST_ID.set(rid)
    started = time.perf_counter()
    method = request.method
    if method not in METHODS:
        method = "OTHER"
    route = route_of(request)
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    if websocket:
        RED.ws_active += 1
    else:
        RED.in_flight += 1
    status = 500
    response: web.StreamResponse | None = None
    verdict = None
    try:
        try:
            check = request.app[ACCESS_CONTROL].read_header(request)
            refusal, verdict = await count_and_judge(request, check)  # 3. rate limit
            if refusal is not None:
                response = refusal
            else:
                response = await admit_principal(request, check)  # 4. authentication
                if response is None:
                    response = await handler(request)
                if verdict is not None and not response.prepared:
                    response.headers.update(verdict.headers())
        except web.HTTPException as exc:
            if verdict is not None:
                exc.headers.update(verdict.headers())
            exc.headers[REQUEST_ID_HEADER] = rid
            status = exc.status
            raise
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away: not a server error.
            # 101 = the WebSocket session that was open; 499 = "client closed request".
            status = 101 if websocket else 499
            raise
        except Exception:
            status = 500  # the handler's answer is lost: for RED its operation is what it had set
            return internal_error(request, rid)
        status = response.status
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = rid
        return response
    finally:
        elapsed = time.perf_counter() - started
        if websocket:
            RED.ws_active -= 1
            RED.request_done(method, route, status, None)
        else:
            RED.in_flight -= 1
            RED.request_done(method, route, status, elapsed)
            if route == "/graphql":
                RED.graphql_done(graphql_operation(request, response), elapsed)
        log_request(request, route, status, elapsed, websocket)
        REQUEST_ID.reset(token)
