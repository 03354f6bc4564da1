"""Routes of /graphql: WebSocket upgrade, GraphiQL page (development), and GraphQL over HTTP."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from http_app.graphql.http import graphql_http
from http_app.graphql.ws import graphql_ws, is_websocket
from http_app.keys import SETTINGS
from http_app.principal import ANONYMOUS

GRAPHIQL_PAGE = Path(__file__).resolve().parent.parent / "static" / "graphiql.html"


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
        return web.FileResponse(GRAPHIQL_PAGE, headers={"Cache-Control": "no-store"})
    return await graphql_http(request)


def setup_graphql(app: web.Application) -> None:
    app.router.add_get("/graphql", graphql_get, allow_head=False)
    app.router.add_post("/graphql", graphql_http)
