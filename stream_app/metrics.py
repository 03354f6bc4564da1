"""Every Prometheus metric of the worker process (fetcher, agents, sinks, stream), in one place.

Owned by the observability issue; the pipeline uses the names below (RECORDS_PRODUCED, RECORDS_SCORED,
SCORES_PERSISTED, PERSIST_RETRIES, BAD_MESSAGES, RUNS, FETCH_SECONDS, PERSIST_SECONDS). To add a metric,
add it here with a HELP text that explains it. Wiring:
    install_worker_metrics(app, settings, redis_url)   # sensor (events, rebalances, table recovery) and
                                                       # the stream lag/backlog refresher
    start_metrics_server(settings.worker_metrics_port) # once, at worker start
    observe_rpc_failure(exc)                           # a fetch failed: RPC error by kind
    observe_runs(progress_list)                        # run transitions (completed, partial, failed)
Labels are bounded (topic, partition, outcome, kind, status, operation); never a validator, user or address.
Naming follows the Prometheus rules: prefix `solstake_`, seconds, counters end in `_total`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from faust import Sensor
from faust.types import TP, AppT, EventT, StreamT
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server

from stream_app.metrics_shared import DB_WRITE_SECONDS, FAST_BUCKETS, track_pool
from stream_app.streamstats import StreamCollector

if TYPE_CHECKING:
    from stream_app.runs import RunProgress
    from stream_app.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["DB_WRITE_SECONDS", "track_pool"]

# A fetch cycle reads every validator over RPC: seconds to minutes.
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# --- fetcher ------------------------------------------------------------------------------------------
FETCH_CYCLES = Counter(
    "solstake_fetch_cycles_total",
    "Fetch cycles (one cluster snapshot read over RPC = one scoring run), by outcome: running (snapshot "
    "fetched and its records produced; the run is now being scored) or failed (fetch or produce failed).",
    ["outcome"],
)
RUNS = FETCH_CYCLES  # the name the pipeline's agents use
FETCH_SECONDS = Histogram(
    "solstake_fetch_duration_seconds",
    "Time one fetch cycle spent reading the cluster snapshot over RPC.",
    buckets=CYCLE_BUCKETS,
)
RPC_ERRORS = Counter(
    "solstake_rpc_errors_total",
    "Fetch cycles that failed on the Solana RPC (after retries and failover), by kind: unavailable, "
    "malformed, stale, too_large, response (a JSON-RPC or HTTP error answer) or other.",
    ["kind"],
)
RECORDS_PRODUCED = Counter(
    "solstake_fetch_records_produced_total",
    "Validator records the fetcher put on the validator-records topic.",
)

# --- agents ---------------------------------------------------------------------------------------------
RECORDS_SCORED = Counter(
    "solstake_stream_records_processed_total",
    "Validator records the scoring agent processed, by outcome: ok (scored) or failed (sent on as a failed "
    "score event). At-least-once: a replayed record counts again.",
    ["outcome"],
)
BAD_MESSAGES = Counter(
    "solstake_stream_bad_messages_total",
    "Stream messages that could not be decoded, by topic (logged, and dead-lettered when unidentifiable).",
    ["topic"],
)
DEAD_LETTERS = Counter(
    "solstake_dead_letters",
    "Messages moved to the dead-letters topic, by the topic they came from (a score PostgreSQL keeps "
    "refusing, or a record nobody can identify).",
    ["topic"],
)
EVENT_SECONDS = Histogram(
    "solstake_stream_processing_seconds",
    "Time from a stream event entering an agent to the agent acknowledging it, by topic.",
    ["topic"],
    buckets=FAST_BUCKETS,
)
EVENTS_IN = Counter(
    "solstake_stream_events_total",
    "Stream events delivered to agents, by topic.",
    ["topic"],
)
REBALANCES = Counter(
    "solstake_stream_rebalances_total",
    "Consumer-group rebalances this worker took part in.",
)
REBALANCE_SECONDS = Histogram(
    "solstake_stream_rebalance_duration_seconds",
    "Time from a rebalance starting to this worker processing again (includes table recovery).",
    buckets=CYCLE_BUCKETS,
)
RECOVERY_SECONDS = Histogram(
    "solstake_table_recovery_seconds",
    "Time Faust spent rebuilding this worker's table partitions from their changelogs after a rebalance.",
    buckets=CYCLE_BUCKETS,
)

# --- scoring and persistence ------------------------------------------------------------------------------
SCORING_RUNS = Counter(
    "solstake_scoring_runs_finished_total",
    "Scoring runs that reached a final status in this worker: completed, partial (timed out with some "
    "records) or failed (no records, or the fetch failed).",
    ["status"],
)
SCORES_PERSISTED = Counter(
    "solstake_scores_persisted_total",
    "Trust scores written to PostgreSQL (one per validator per run; a replayed batch counts again).",
)
PERSIST_SECONDS = DB_WRITE_SECONDS.labels("persist_scores")
PERSIST_RETRIES = Counter(
    "solstake_persist_retries_total",
    "Batches of scores whose PostgreSQL write failed and was retried.",
)

STREAMS = StreamCollector()
REGISTRY.register(STREAMS)


def rpc_error_kind(exc: BaseException) -> str:
    """A bounded label for an RPC failure (the project's RpcError subclasses)."""
    from stream_app.sources import rpc

    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (rpc.RpcUnavailable, "unavailable"),
        (rpc.RpcMalformed, "malformed"),
        (rpc.RpcStale, "stale"),
        (rpc.RpcTooLarge, "too_large"),
        (rpc.RpcResponseError, "response"),
    )
    for cls, kind in kinds:
        if isinstance(exc, cls):
            return kind
    return "other"


def observe_rpc_failure(error: BaseException) -> None:
    """Count a fetch that failed on RPC (no-op for other errors)."""
    from stream_app.sources.rpc import RpcError

    if isinstance(error, RpcError):
        RPC_ERRORS.labels(rpc_error_kind(error)).inc()


def observe_runs(progress: Iterable[RunProgress]) -> None:
    """Count runs that just moved to a final status (completed, partial, failed)."""
    for p in progress:
        if p.changed and p.status in ("completed", "partial", "failed"):
            SCORING_RUNS.labels(p.status).inc()


_CHILDREN: dict[tuple[int, str], Any] = {}  # (id of a metric, topic) -> its labelled child


def _for_topic(metric: Any, topic: str) -> Any:
    """`metric.labels(topic)`, resolved once per topic: `.labels()` per event cost more than the update."""
    child = _CHILDREN.get((id(metric), topic))
    if child is None:
        child = _CHILDREN[id(metric), topic] = metric.labels(topic)
    return child


class PipelineSensor(Sensor):
    """Faust sensor: events in/out per topic, rebalances and their duration, table recovery time."""

    def on_stream_event_in(self, tp: TP, offset: int, stream: StreamT, event: EventT) -> dict[str, Any] | None:
        _for_topic(EVENTS_IN, tp.topic).inc()
        return {"t": time.monotonic()}

    def on_stream_event_out(self, tp: TP, offset: int, stream: StreamT, event: EventT,
                            state: dict[str, Any] | None = None) -> None:
        if state and "t" in state:
            _for_topic(EVENT_SECONDS, tp.topic).observe(time.monotonic() - state["t"])

    def on_rebalance_start(self, app: AppT) -> dict[str, Any]:
        REBALANCES.inc()
        return {"t": time.monotonic()}

    def on_rebalance_end(self, app: AppT, state: dict[str, Any]) -> None:
        now = time.monotonic()
        started = state.get("t") if state else None
        if started is not None:
            REBALANCE_SECONDS.observe(now - started)
            recovery = getattr(getattr(app, "tables", None), "recovery", None)
            begun = getattr(recovery, "_recovery_started_at", None)
            ended = getattr(recovery, "_recovery_ended_at", None)
            if begun is not None and ended is not None and started <= begun <= ended:
                RECOVERY_SECONDS.observe(ended - begun)


def install_worker_metrics(app: Any, settings: Settings, redis_url: str, *, interval: float = 5.0) -> None:
    """Add the Faust sensor and a timer that refreshes the stream lag/backlog gauges from Redis."""
    import redis.asyncio as aioredis

    from stream_app.app import broker_url
    from stream_app.transport.url import TransportURLError, parse_broker_url

    app.sensors.add(PipelineSensor())
    try:
        _plain, options = parse_broker_url(broker_url(settings, redis_url))
    except TransportURLError:
        return  # Kafka broker: Faust's own tooling reports lag there
    client: list[aioredis.Redis] = []

    async def refresh_stream_gauges() -> None:
        if not client:
            client.append(aioredis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=2.0))
        await STREAMS.refresh(client[0], options.prefix)

    app.timer(interval=interval, name="solstake.metrics.streams")(refresh_stream_gauges)


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> Any:
    """Serve this process's registry on http://addr:port/metrics (a daemon thread). Returns the server."""
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    log.info("worker metrics on %s:%d/metrics", addr, port)
    return server
