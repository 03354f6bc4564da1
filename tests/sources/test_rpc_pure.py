"""The client's pure pieces: backoff with full jitter and Retry-After parsing (RFC 9110 §10.2.3)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from stream_app.sources.rpc import backoff_delay, parse_retry_after
from stream_app.sources.simulator.server import SimulatorHandle
from tests.sources.conftest import fast_client


@given(st.integers(0, 30), st.floats(0.001, 5), st.floats(0.001, 60), st.integers(0, 2**32))
def test_backoff_stays_within_the_exponential_envelope(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = backoff_delay(attempt, base, cap, random.Random(seed))
    if attempt == 0:
        assert delay == 0
    else:
        assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1))


def test_backoff_is_jittered() -> None:
    rng = random.Random(1)
    assert len({round(backoff_delay(4, 0.25, 8, rng), 6) for _ in range(50)}) > 40


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=120), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == 120.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now=now.timestamp()) == 0.0


async def test_call_many_keeps_the_order(small_sim: SimulatorHandle) -> None:
    votes = [v.vote for v in small_sim.cluster.validators]
    batches = [votes[i:i + 7] for i in range(0, len(votes), 7)]
    async with fast_client(small_sim.url) as rpc:
        results = await rpc.call_many("getMultipleAccounts", [[b, {"encoding": "jsonParsed"}] for b in batches],
                                      concurrency=4)
    for batch, result in zip(batches, results, strict=True):
        assert [a["data"]["parsed"]["info"]["nodePubkey"] for a in result["value"]] == [
            small_sim.cluster._by_vote[v].identity for v in batch]
