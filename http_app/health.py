"""`GET /health`: the seed's minimal liveness answer. The observability issue extends it."""

from __future__ import annotations

from aiohttp import web


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def setup_health(app: web.Application) -> None:
    app.router.add_get("/health", health)
