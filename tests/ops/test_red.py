"""The loop-local RED histogram exposes exactly what prometheus-client's own Histogram would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from http_app.red import RedRecorder
from stream_app.metrics_shared import FAST_BUCKETS
from tests.ops.conftest import samples, value

values = st.lists(st.one_of(st.sampled_from(FAST_BUCKETS), st.floats(0, 20, allow_nan=False)), max_size=60)


@given(values)
def test_same_buckets_count_and_sum_as_prometheus_client(observed: list[float]) -> None:
    reference_registry, ours_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("solstake_http_request_duration_seconds", "h", ["method", "route"], buckets=FAST_BUCKETS,
                          registry=reference_registry)
    ours = RedRecorder(FAST_BUCKETS)
    ours_registry.register(ours)
    for v in observed:
        reference.labels("GET", "/x").observe(v)
        ours.request_done("GET", "/x", 200, v)
    want = {k: v for k, v in samples(generate_latest(reference_registry).decode()).items()
            if k[0].startswith("solstake_http_request_duration_seconds")}
    got = {k: v for k, v in samples(generate_latest(ours_registry).decode()).items()
           if k[0].startswith("solstake_http_request_duration_seconds")}
    if not observed:
        want = {}  # prometheus-client exposes nothing for a label set never used; nor do we
    assert got.keys() == want.keys()
    for key, expected in want.items():
        assert abs(got[key] - expected) <= 1e-9 * max(1.0, abs(expected)), key
    counted = value(samples(generate_latest(ours_registry).decode()), "solstake_http_requests_total",
                    method="GET", route="/x", code="200")
    assert counted == len(observed)
