"""`python -m http_app`: the `web` process. Reads Settings, serves on $HOST:$PORT with uvloop."""

from __future__ import annotations

import asyncio
import logging

import uvloop
from aiohttp import web

from http_app.app import create_app
from stream_app.logs import configure_logging
from stream_app.runtime import services
from stream_app.settings import Settings, load_or_exit


async def serve(settings: Settings) -> None:
    async with services(settings) as urls:
        app = create_app(settings.with_overrides(database_url=urls.database_url, redis_url=urls.redis_url))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        await site.start()
        logging.getLogger("http_app").info("web listening on %s:%s", settings.host, settings.port)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


def main() -> None:
    settings = load_or_exit()
    configure_logging(settings)  # JSON in production, console in development; request id on request logs
    uvloop.install()
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
