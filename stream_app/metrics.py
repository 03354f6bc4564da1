"""Prometheus metrics of the worker (served on WORKER_METRICS_PORT by `python -m stream_app.worker`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECORDS_PRODUCED = Counter("solstake_pipeline_records_produced_total", "validator records put on the stream")
RECORDS_SCORED = Counter("solstake_pipeline_records_scored_total", "validator records scored", ["outcome"])
SCORES_PERSISTED = Counter("solstake_pipeline_scores_persisted_total", "score rows written (replays included)")
PERSIST_RETRIES = Counter("solstake_pipeline_persist_retries_total", "batch writes retried after an error")
BAD_MESSAGES = Counter("solstake_pipeline_bad_messages_total", "undecodable topic messages", ["topic"])
RUNS = Counter("solstake_pipeline_runs_total", "fetch cycles by outcome", ["status"])
FETCH_SECONDS = Histogram("solstake_pipeline_fetch_seconds", "seconds to fetch one cluster snapshot",
                          buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
PERSIST_SECONDS = Histogram("solstake_pipeline_persist_batch_seconds", "seconds per PostgreSQL batch write",
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
