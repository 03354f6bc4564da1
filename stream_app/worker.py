"""`python -m stream_app.worker`: one Faust worker (agents, scoring table, the leader's fetch timer).

Scale by starting more: partitions rebalance across workers. SIGTERM (or Ctrl-C) stops it gracefully:
the in-flight batch is written and committed, the worker leaves the group, and it exits.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in main(), after the SIGTERM handler: importing Faust takes 50 ms to seconds
    import faust

    from stream_app.settings import Settings


def build(settings: Settings, database_url: str, redis_url: str) -> faust.App:
    """The Faust app with agents registered (importable by tests and benches)."""
    from stream_app.agents import Pipeline, register
    from stream_app.app import create_stream_app
    from stream_app.metrics import install_worker_metrics

    stream = create_stream_app(settings, redis_url)
    register(stream, Pipeline(settings, database_url, redis_url, stream))
    install_worker_metrics(stream.app, settings, redis_url)  # Faust sensor + stream lag/backlog gauges
    return stream.app


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    # Until the Faust worker installs its graceful handler, a SIGTERM finds nothing in flight: exit 0 at once
    # (a worker stopped while still importing used to die of the signal).
    signal.signal(signal.SIGTERM, _stop_before_start)
    import faust

    from stream_app.settings import load_or_exit

    settings = load_or_exit()
    from stream_app.logs import configure_logging
    from stream_app.metrics import start_metrics_server
    from stream_app.runtime import resolve_embedded

    configure_logging(settings)  # JSON in production, console in development; secrets masked
    urls, _embedded = resolve_embedded(settings)  # explicit URLs under `solstake run`; embedded when alone
    app = build(settings, urls.database_url, urls.redis_url)
    try:
        start_metrics_server(settings.worker_metrics_port, addr=settings.host)
    except OSError as exc:
        logging.getLogger(__name__).warning("worker metrics port %s unavailable: %s",
                                            settings.worker_metrics_port, exc)
    import uvloop

    uvloop.install()  # before the Worker picks its loop: ~20-30% less event-loop overhead per message
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), override_logging=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
