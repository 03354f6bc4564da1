"""`python -m http_app`: the `web` process. Reads Settings, serves on $HOST:$PORT with uvloop."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop
from aiohttp import web

from http_app.app import create_app
from stream_app.logs import configure_logging
from stream_app.runtime import services
from stream_app.settings import Settings, load_or_exit

SHUTDOWN_GRACE = 25.0  # seconds in-flight requests get after SIGTERM (platforms kill at 30)


async def serve(settings: Settings) -> None:
    # SIGTERM (docker stop, Heroku, `solstake run`) and Ctrl-C stop accepting, let in-flight requests
    # finish (up to SHUTDOWN_GRACE), then close; without this SIGTERM killed the process mid-request.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with services(settings) as urls:
        app = create_app(settings.with_overrides(database_url=urls.database_url, redis_url=urls.redis_url))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        await site.start()
        logging.getLogger("http_app").info("web listening on %s:%s", settings.host, settings.port)
        try:
            await stop.wait()
            logging.getLogger("http_app").info("stopping: finishing in-flight requests")
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
