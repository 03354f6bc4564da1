"""`python -m stream_app.worker`: one Faust worker (agents, scoring table, the leader's fetch timer).

Scale by starting more: partitions rebalance across workers. SIGTERM (or Ctrl-C) stops it gracefully:
the in-flight batch is written and committed, the worker leaves the group, and it exits.
"""

from __future__ import annotations

import logging
import sys

import faust

from stream_app.settings import Settings, load_or_exit


def build(settings: Settings, database_url: str, redis_url: str) -> faust.App:
    """The Faust app with agents registered (importable by tests and benches)."""
    from stream_app.agents import Pipeline, register
    from stream_app.app import create_stream_app

    stream = create_stream_app(settings, redis_url)
    register(stream, Pipeline(settings, database_url, redis_url, stream))
    return stream.app


def main() -> None:
    settings = load_or_exit()
    from prometheus_client import start_http_server

    from stream_app.runtime import resolve_embedded

    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout)
    urls, _embedded = resolve_embedded(settings)  # explicit URLs under `solstake run`; embedded when alone
    app = build(settings, urls.database_url, urls.redis_url)
    try:
        start_http_server(settings.worker_metrics_port, addr="127.0.0.1")
    except OSError as exc:
        logging.getLogger(__name__).warning("worker metrics port %s unavailable: %s",
                                            settings.worker_metrics_port, exc)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), override_logging=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
