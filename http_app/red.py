"""Per-request RED bookkeeping on plain Python numbers, exposed through a Prometheus collector.

prometheus-client's Counter/Histogram take a lock and validate labels on every call (~2-3 µs each); the RED
middleware makes five such updates per request, which measured as a visible share of a cached GraphQL
answer. The web process updates and scrapes these from its one event loop, so plain dict and list updates
are safe and cost a fraction of that. The exposition is the same as prometheus-client's own histograms.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class LoopHistogram:
    """Bucket counts for one label set; `le` semantics (a value equal to a bound falls in that bucket)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((floatToGoString(bound), float(running)))
        return out


class RedRecorder(Collector):
    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.requests: dict[tuple[str, str, int], int] = {}
        self.seconds: dict[tuple[str, str], LoopHistogram] = {}
        self.graphql_seconds: dict[str, LoopHistogram] = {}
        # solstake_graphql_request_seconds{cached} and solstake_cache_lookups_total{tier,result}: updated by
        # every cached answer, so they live here too rather than behind prometheus-client's locks.
        self.answer_seconds: dict[str, LoopHistogram] = {}
        self.cache_lookups: dict[tuple[str, str], int] = {}
        self.in_flight = 0
        self.ws_active = 0

    def _histogram(self, store: dict[Any, LoopHistogram], key: Any) -> LoopHistogram:
        hist = store.get(key)
        if hist is None:
            hist = store[key] = LoopHistogram(self.bounds)
        return hist

    def request_done(self, method: str, route: str, status: int, elapsed: float | None) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if elapsed is not None:
            hist = self.seconds.get((method, route)) or self._histogram(self.seconds, (method, route))
            hist.observe(elapsed)

    def graphql_done(self, operation_type: str, elapsed: float) -> None:
        hist = self.graphql_seconds.get(operation_type) or self._histogram(self.graphql_seconds, operation_type)
        hist.observe(elapsed)

    def answer_histogram(self, cached: str) -> LoopHistogram:
        """The latency histogram of answers from `cached` (local, redis, no); callers may keep it."""
        return self._histogram(self.answer_seconds, cached)

    def cache_lookup(self, tier: str, result: str, count: int = 1) -> None:
        key = (tier, result)
        self.cache_lookups[key] = self.cache_lookups.get(key, 0) + count

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "solstake_http_requests",
            "HTTP requests answered, by method, route template (\"unmatched\" for unknown paths) and status code.",
            labels=["method", "route", "code"])
        for (method, route, status), count in sorted(self.requests.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        yield _histograms(
            "solstake_http_request_duration_seconds",
            "Time to answer an HTTP request (WebSocket sessions excluded), by method and route template.",
            ["method", "route"], self.seconds)
        yield _histograms(
            "solstake_graphql_operation_duration_seconds",
            "Time to answer a GraphQL HTTP request, by operation type (query, mutation, unknown = refused "
            "before the type was known).",
            ["operation_type"], self.graphql_seconds)
        yield _histograms(
            "solstake_graphql_request_seconds",
            "Time to answer a GraphQL request over HTTP, by where the answer came from: local (process cache), "
            "redis (shared cache) or no (executed).",
            ["cached"], self.answer_seconds)
        lookups = CounterMetricFamily(
            "solstake_cache_lookups",
            "GraphQL response-cache lookups, by tier (local process memory or redis) and result (hit or miss).",
            labels=["tier", "result"])
        for (tier, result), count in sorted(self.cache_lookups.items()):
            lookups.add_metric([tier, result], count)
        yield lookups
        in_flight = GaugeMetricFamily(
            "solstake_http_requests_in_flight",
            "HTTP requests being answered right now (open WebSocket sessions are counted apart).")
        in_flight.add_metric([], self.in_flight)
        yield in_flight
        ws = GaugeMetricFamily("solstake_ws_connections_active", "WebSocket connections open right now.")
        ws.add_metric([], self.ws_active)
        yield ws


def _histograms(name: str, documentation: str, labels: list[str],
                store: dict[Any, LoopHistogram]) -> HistogramMetricFamily:
    """One histogram family from a store keyed by a label value or a tuple of label values."""
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key, hist in sorted(store.items()):
        values = list(key) if isinstance(key, tuple) else [key]
        family.add_metric(values, hist.cumulative(), hist.sum)
    return family
