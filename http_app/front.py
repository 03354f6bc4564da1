"""The app's one middleware: request id + error masking, RED metrics, rate limit, authentication.

The same steps, in the same order and with the same answers, as the four separate middlewares
(`errors.request_id_and_errors`, `metrics.red_middleware`, `ratelimit.rate_limit` + `auth.authenticate`,
merged in `access.access_control`), which stay for apps that compose them differently. One frame instead of
three, the token check computed once for both access-control steps, and a request without a token served
from its client's reserved rate-limit slots without a coroutine (`RateLimiting.reserved_verdict`): on a
cached GraphQL answer, per-request Python calls were most of our cost above a bare handler.

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

from http_app.auth import ACCESS_CONTROL, NO_TOKEN, PRINCIPAL, TOKEN_CHECK, admit_principal
from http_app.errors import REQUEST_ID_HEADER, internal_error, new_request_id
from http_app.metrics import (
    METHODS,
    RED,
    REQUEST_ID,
    request_finished,
    route_of,
)
from http_app.principal import ANONYMOUS
from http_app.ratelimit import CACHE_KEY_HOOK, RATE_LIMIT_VERDICT, RATE_LIMITING, Verdict, count_and_judge


@web.middleware
async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    headers = request.headers
    given = headers.get(REQUEST_ID_HEADER)
    # a caller's id only if short and printable (logs cannot be forged with newlines), as errors.request_id
    rid = given if given is not None and 0 < len(given) <= 64 and given.isprintable() else new_request_id()
    request["request_id"] = rid
    token = REQUEST_ID.set(rid)
    started = time.perf_counter()
    method = request.method
    if method not in METHODS:
        method = "OTHER"
    route = route_of(request)
    upgrade = headers.get("Upgrade")
    websocket = upgrade is not None and upgrade.lower() == "websocket"
    if websocket:
        RED.ws_active += 1
    else:
        RED.in_flight += 1
    status = 500
    response: web.StreamResponse | None = None
    verdict: Verdict | None = None
    app = request.app
    try:
        try:
            if headers.get("Authorization") is None and app.get(CACHE_KEY_HOOK) is None:
                # no token: anonymous; the verdict from a reserved slot when the client has one left
                request[TOKEN_CHECK] = check = NO_TOKEN
                verdict = app[RATE_LIMITING].reserved_verdict(request)
            else:
                check = app[ACCESS_CONTROL].read_header(request)
            if verdict is not None:  # what count_and_judge and admit_principal do with it
                request[RATE_LIMIT_VERDICT] = verdict
                request[PRINCIPAL] = ANONYMOUS
                response = await handler(request)
            else:
                refusal, verdict = await count_and_judge(request, check)  # 3. rate limit
                if refusal is not None:
                    response = refusal
                else:
                    response = await admit_principal(request, check)  # 4. authentication
                    if response is None:
                        response = await handler(request)
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
            if verdict is not None:
                added = verdict.headers()
                added[REQUEST_ID_HEADER] = rid
                response.headers.update(added)
            else:
                response.headers[REQUEST_ID_HEADER] = rid
        return response
    finally:
        request_finished(request, response, method, route, status, started, websocket)
        REQUEST_ID.reset(token)
