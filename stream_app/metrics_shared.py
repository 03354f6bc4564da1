"""Metrics every process exposes: build info, the asyncpg pool, PostgreSQL write latency, and exposition.

Each process (web, worker) serves its own registry (prometheus_client's default one); the process-specific
metrics live in `stream_app.metrics` (worker) and `http_app.metrics` (web). Naming follows the Prometheus
rules: prefix `solstake_`, base units (seconds), counters end in `_total`, no unbounded labels.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import asyncpg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# `*_created` series double the exposition and no dashboard of ours reads them.
disable_created_metrics()

# Buckets for database and Redis round trips and small batches: 0.5 ms .. 10 s.
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

DB_WRITE_SECONDS = Histogram(
    "solstake_db_write_seconds",
    "Time one PostgreSQL write transaction took, by operation (e.g. persist_scores: one batch of score events "
    "staged with COPY and merged).",
    ["operation"],
    buckets=FAST_BUCKETS,
)


def version() -> str:
    try:
        return metadata.version("sol-stake")
    except metadata.PackageNotFoundError:
        return "unknown"


def git_commit() -> str:
    """The commit being run: $SOURCE_VERSION / $GIT_COMMIT (set by build platforms), else `git rev-parse`."""
    for name in ("SOURCE_VERSION", "GIT_COMMIT", "GIT_SHA"):
        value = os.environ.get(name, "").strip()
        if value:
            return value[:40]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
            timeout=2, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else "unknown"


BUILD_INFO = Info("solstake_build", "Version and git commit of the running sol-stake code (value is always 1).")
BUILD_INFO.info({"version": version(), "commit": git_commit()})


class PoolCollector(Collector):
    """asyncpg pool occupancy, read at scrape time (pool getters are cheap, non-blocking attribute reads)."""

    def __init__(self) -> None:
        self._pools: dict[int, asyncpg.Pool] = {}  # asyncpg pools cannot be weakly referenced

    def track(self, pool: asyncpg.Pool) -> None:
        self._pools[id(pool)] = pool

    def collect(self) -> Iterable[GaugeMetricFamily]:
        size = GaugeMetricFamily("solstake_db_pool_connections",
                                 "PostgreSQL connections held by this process's pool, by state (idle or in_use).",
                                 labels=["state"])
        limit = GaugeMetricFamily("solstake_db_pool_max_connections",
                                  "Largest number of PostgreSQL connections this process's pool may open.")
        idle = in_use = maximum = 0
        for key, pool in list(self._pools.items()):
            if pool.is_closing():
                self._pools.pop(key, None)  # closed pools are forgotten
                continue
            total, free = pool.get_size(), pool.get_idle_size()
            idle += free
            in_use += max(0, total - free)
            maximum += pool.get_max_size()
        size.add_metric(["idle"], idle)
        size.add_metric(["in_use"], in_use)
        limit.add_metric([], maximum)
        yield size
        yield limit


POOLS = PoolCollector()
REGISTRY.register(POOLS)


def track_pool(pool: asyncpg.Pool) -> None:
    """Report this pool's occupancy in `solstake_db_pool_*` (call once after creating it)."""
    POOLS.track(pool)


def exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The text exposition of `registry` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
