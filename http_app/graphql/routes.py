"""Routes of /graphql: WebSocket upgrade, GraphiQL page (development), and GraphQL over HTTP."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path

from aiohttp import web

from http_app.graphql.http import graphql_http
from http_app.graphql.ws import OPEN_SOCKETS, graphql_ws, is_websocket
from http_app.keys import SETTINGS
from http_app.principal import ANONYMOUS

GRAPHIQL_PAGE = Path(__file__).resolve().parent.parent / "static" / "graphiql.html"


CDN = "https://unpkg.com"


@lru_cache(maxsize=1)
def graphiql_page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy: CDN assets plus exactly our inline script (by hash)."""
    page = GRAPHIQL_PAGE.read_bytes()
    inline = re.search(rb"<script>(.*?)</script>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(inline.group(1) if inline else b"").digest()).decode()
    policy = (f"default-src 'none'; script-src {CDN} 'sha256-{digest}'; style-src {CDN} 'unsafe-inline'; "
              f"img-src 'self' data: {CDN}; font-src {CDN} data:; connect-src 'self' ws: wss:; "
              "frame-ancestors 'none'; base-uri 'none'")
    return page, policy


def graphiql_enabled(request: web.Request) -> bool:
    settings = request.app[SETTINGS]
    enabled = settings.graphiql if settings.graphiql is not None else not settings.production
    return enabled or request.get("principal", ANONYMOUS).is_admin


def wants_graphiql(request: web.Request) -> bool:
    return "query" not in request.query and "text/html" in request.headers.get("Accept", "")


async def graphql_get(request: web.Request) -> web.StreamResponse:
    if is_websocket(request):
        return await graphql_ws(request)
    if wants_graphiql(request):
        if not graphiql_enabled(request):
            raise web.HTTPNotFound(text="GraphiQL is disabled on this server")
        page, policy = graphiql_page()
        return web.Response(body=page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store", "Content-Security-Policy": policy})
    return await graphql_http(request)


def setup_graphql(app: web.Application) -> None:
    app[OPEN_SOCKETS] = {}
    app.router.add_get("/graphql", graphql_get, allow_head=False)
    app.router.add_post("/graphql", graphql_http)
