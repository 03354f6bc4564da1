"""GraphQL over WebSocket at /graphql: `graphql-transport-ws` (graphql-ws library) and the legacy
`graphql-ws` (subscriptions-transport-ws) protocol, negotiated by subprotocol.

Guards: connection_init must arrive within `init_timeout` (else close 4408); heartbeat (WebSocket
ping frames plus protocol pings / `ka`) every `heartbeat` seconds; at most `max_subscriptions` running
operations per socket; a token in `connection_init.payload` picks the caller (bad token: close 4403).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from aiohttp import WSMsgType, web

from http_app.cache import canonical_variables
from http_app.client_ip import client_ip
from http_app.graphql.errors import INTERNAL, error_body
from http_app.graphql.fanout import SHARED
from http_app.graphql.http import RequestError, context_for, execute
from http_app.graphql.limits import MAX_BODY_BYTES, analyze
from http_app.keys import SETTINGS
from http_app.metrics import WS_CONNECTIONS
from http_app.principal import ANONYMOUS, Principal

log = logging.getLogger("http_app.graphql.ws")

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)


@dataclass(frozen=True)
class WsOptions:
    init_timeout: float = 10.0
    heartbeat: float = 20.0  # under the 30 s that proxies (and Heroku's 55 s) tolerate
    max_subscriptions: int = 10
    max_sockets_per_client: int | None = None  # per client IP; None: Settings.ws_max_sockets_per_client


WS_OPTIONS: web.AppKey[WsOptions] = web.AppKey("ws_options", WsOptions)
OPEN_SOCKETS: web.AppKey[dict[str, int]] = web.AppKey("ws_open_sockets", dict)  # client IP -> open sockets


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def graphql_ws(request: web.Request) -> web.StreamResponse:
    options = request.app.get(WS_OPTIONS) or WsOptions()
    ws = web.WebSocketResponse(protocols=PROTOCOLS, heartbeat=options.heartbeat, max_msg_size=MAX_BODY_BYTES)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="expected a WebSocket upgrade")
    open_sockets = request.app[OPEN_SOCKETS]
    client = client_ip(request.remote, request.headers.getall("X-Forwarded-For", ()),
                       request.app[SETTINGS].trusted_proxy_hops)
    cap = options.max_sockets_per_client or request.app[SETTINGS].ws_max_sockets_per_client
    if open_sockets.get(client, 0) >= cap:
        raise web.HTTPTooManyRequests(text=f"at most {cap} open sockets per client")
    open_sockets[client] = open_sockets.get(client, 0) + 1
    try:
        await ws.prepare(request)
        if ws.ws_protocol not in PROTOCOLS:
            await ws.close(code=4406, message=b"Subprotocol not acceptable")
            return ws
        WS_CONNECTIONS.labels(ws.ws_protocol).inc()
        await Connection(request, ws, options).run()
        return ws
    finally:
        open_sockets[client] -= 1
        if not open_sockets[client]:
            del open_sockets[client]


async def resolve_principal(app: web.Application, payload: Any) -> tuple[Principal, float | None]:
    """The caller named by `connection_init.payload` and when its token expires (unix seconds);
    ANONYMOUS (never expiring) when the payload carries no token."""
    token = None
    if isinstance(payload, dict):
        for key in ("Authorization", "authorization", "authToken", "token"):
            value = payload.get(key)
            if isinstance(value, str) and value.strip():
                token = value.strip()
                break
        if token is None and isinstance(payload.get("headers"), dict):
            value = payload["headers"].get("Authorization") or payload["headers"].get("authorization")
            token = value.strip() if isinstance(value, str) else None
    if not token:
        return ANONYMOUS, None
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    hook = _token_hook()
    if hook is None:
        return ANONYMOUS, None  # access control not installed yet: tokens grant nothing
    principal = await hook(app, token)
    if not isinstance(principal, Principal):
        raise PermissionError("token rejected")
    # The hook has verified the token; here we only read when it stops being valid.
    exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    return principal, float(exp) if isinstance(exp, int | float) else None


def _token_hook() -> Callable[[web.Application, str], Awaitable[Principal]] | None:
    """`http_app.auth.principal_from_token(app, token)`, filled by the access-control issue."""
    try:
        module = importlib.import_module("http_app.auth")
    except ImportError:
        return None
    hook = getattr(module, "principal_from_token", None)
    return hook if callable(hook) else None


class Connection:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, options: WsOptions) -> None:
        self.app = request.app
        self.request = request
        self.ws = ws
        self.options = options
        self.legacy = ws.ws_protocol == LEGACY_WS
        self.principal = ANONYMOUS
        self.acknowledged = False
        self.init_received = False
        self.operations: dict[str, asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()
        self._expiry: asyncio.Task[None] | None = None

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        async with self._send_lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(orjson.dumps(message).decode())

    async def send_text(self, text: str) -> None:
        if self.ws.closed:
            return
        async with self._send_lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(text)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode())

    async def run(self) -> None:
        watchdog = asyncio.create_task(self._init_watchdog())
        keepalive = asyncio.create_task(self._keepalive())
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        await self.close(4400, "Binary messages are not supported")
                    break
                try:
                    message = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    message = None
                if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                    if self.legacy:
                        await self.send({"type": "connection_error", "payload": {"message": "Invalid message"}})
                        continue
                    await self.close(4400, "Invalid message received")
                    break
                await (self._legacy(message) if self.legacy else self._modern(message))
                if self.ws.closed:
                    break
        finally:
            watchdog.cancel()
            keepalive.cancel()
            if self._expiry is not None:
                self._expiry.cancel()
            for task in self.operations.values():
                task.cancel()
            await asyncio.gather(watchdog, keepalive, *self.operations.values(), return_exceptions=True)

    async def _close_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        await self.close(4401, "Unauthorized: token expired")

    async def _init_watchdog(self) -> None:
        await asyncio.sleep(self.options.init_timeout)
        if not self.acknowledged:
            await self.close(4408, "Connection initialisation timeout")

    async def _keepalive(self) -> None:
        while not self.ws.closed:
            await asyncio.sleep(self.options.heartbeat)
            if self.acknowledged:
                await self.send({"type": "ka"} if self.legacy else {"type": "ping"})

    async def _accept_init(self, payload: Any) -> bool:
        if self.init_received:
            await self.close(4429, "Too many initialisation requests")
            return False
        self.init_received = True
        try:
            self.principal, expires_at = await resolve_principal(self.app, payload)
        except Exception:
            await self.close(4403, "Forbidden")
            return False
        if expires_at is not None:  # a long-lived socket must not outlive the token that opened it
            self._expiry = asyncio.create_task(self._close_at(expires_at))
        self.acknowledged = True
        await self.send({"type": "connection_ack"})
        return True

    # -- graphql-transport-ws --
    async def _modern(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "connection_init":
            await self._accept_init(message.get("payload"))
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            if not self.acknowledged:
                await self.close(4401, "Unauthorized")
                return
            op_id = message.get("id")
            if not isinstance(op_id, str) or not op_id:
                await self.close(4400, "Invalid message received")
                return
            if op_id in self.operations:
                await self.close(4409, f"Subscriber for {op_id} already exists")
                return
            await self._start(op_id, message.get("payload"))
        elif kind == "complete":
            await self._stop(message.get("id"))
        else:
            await self.close(4400, f"Unexpected message type {kind!r}")

    # -- legacy graphql-ws --
    async def _legacy(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "connection_init":
            if await self._accept_init(message.get("payload")):
                await self.send({"type": "ka"})
        elif kind == "start":
            op_id = message.get("id")
            if not self.acknowledged or not isinstance(op_id, str) or not op_id:
                await self.send({"type": "error", "id": op_id, "payload": {"message": "connection not initialised"}})
                return
            if op_id in self.operations:
                await self._stop(op_id)
            await self._start(op_id, message.get("payload"))
        elif kind == "stop":
            await self._stop(message.get("id"))
        elif kind == "connection_terminate":
            await self.close(1000, "Normal Closure")
        else:
            await self.send({"type": "error", "id": message.get("id"),
                             "payload": {"message": f"Unexpected message type {kind!r}"}})

    # -- operations --
    async def _stop(self, op_id: Any) -> None:
        """Client stopped an operation: cancel it and confirm with `complete` (clients wait for it)."""
        task = self.operations.pop(op_id, None) if isinstance(op_id, str) else None
        if task is not None:
            task.cancel()
            await self._complete(op_id)

    async def _reject(self, op_id: str, errors: list[dict[str, Any]]) -> None:
        if self.legacy:
            await self.send({"type": "error", "id": op_id, "payload": errors[0]})
        else:
            await self.send({"type": "error", "id": op_id, "payload": errors})

    async def _start(self, op_id: str, payload: Any) -> None:
        if len(self.operations) >= self.options.max_subscriptions:
            await self._reject(op_id, [error_body(
                f"At most {self.options.max_subscriptions} operations per connection", "TOO_MANY_SUBSCRIPTIONS")])
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            await self._reject(op_id, [error_body("payload.query must be a string", "BAD_REQUEST")])
            return
        query = payload["query"]
        operation_name = payload.get("operationName") or None
        variables = payload.get("variables")
        if variables is not None and not isinstance(variables, dict):
            await self._reject(op_id, [error_body("payload.variables must be an object", "BAD_REQUEST")])
            return
        try:
            operation = self._admit(query, operation_name)
        except RequestError as err:
            await self._reject(op_id, [error_body(m, err.code) for m in err.messages])
            return
        runner = self._subscription if operation == "subscription" else self._single
        task = asyncio.create_task(runner(op_id, query, operation_name, variables))
        self.operations[op_id] = task
        task.add_done_callback(lambda _t, op_id=op_id: self._finished(op_id, _t))  # type: ignore[misc]

    def _finished(self, op_id: str, task: asyncio.Task[None]) -> None:
        if self.operations.get(op_id) is task:
            del self.operations[op_id]

    def _admit(self, query: str, operation_name: str | None) -> str:
        from http_app.graphql.errors import INTROSPECTION_DISABLED, OPERATION_RESOLUTION_FAILURE

        analysis = analyze(query)
        if analysis.problem is not None:
            raise RequestError(400, analysis.problem.messages[0], analysis.problem.code,
                               messages=analysis.problem.messages)
        operation = analysis.operation_type(operation_name)
        if operation is None:
            raise RequestError(400, "Operation not found", OPERATION_RESOLUTION_FAILURE)
        if analysis.introspection and self.app[SETTINGS].production and not self.principal.is_admin:
            raise RequestError(400, "Introspection is disabled", INTROSPECTION_DISABLED)
        return operation

    async def _emit(self, op_id: str, result: dict[str, Any]) -> None:
        await self.send({"type": "data" if self.legacy else "next", "id": op_id, "payload": result})

    async def _complete(self, op_id: str) -> None:
        await self.send({"type": "complete", "id": op_id})

    async def _single(self, op_id: str, query: str, operation_name: str | None,
                      variables: dict[str, Any] | None) -> None:
        context = context_for(self.app, self.principal, self.request.get("request_id"))
        result = await execute(self.app, query, operation_name, variables, context)
        await self._emit(op_id, result)
        await self._complete(op_id)

    async def _subscription(self, op_id: str, query: str, operation_name: str | None,
                            variables: dict[str, Any] | None) -> None:
        """Served by a shared stream: each change is rendered once for every socket asking the same."""
        prefix = f'{{"type":"{"data" if self.legacy else "next"}","id":{orjson.dumps(op_id).decode()},"payload":'

        async def send(encoded: str) -> None:
            await self.send_text(prefix + encoded + "}")

        key = (self.principal.scope, query, operation_name, canonical_variables(variables))
        shared = self.app[SHARED]
        try:
            await shared.serve(key, variables, lambda: context_for(self.app, self.principal), send)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription %s failed", op_id)
            await self._emit(op_id, {"data": None, "errors": [error_body("Internal server error", INTERNAL)]})
        await self._complete(op_id)
