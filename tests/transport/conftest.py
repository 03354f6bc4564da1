"""Fixtures for the transport tests: a Faust app wired to this test's Redis key prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import faust
import pytest
import redis.asyncio as aioredis

from stream_app.transport.keys import KeySpace


@pytest.fixture
def broker_url(redis_url: str, redis_prefix: str) -> str:
    return f"{redis_url}?prefix={redis_prefix}&janitor_interval=0"


@pytest.fixture
def keys(redis_prefix: str) -> KeySpace:
    return KeySpace(redis_prefix)


@pytest.fixture
def app(broker_url: str, redis_prefix: str) -> faust.App:
    return faust.App(f"app-{redis_prefix}", broker=broker_url, store="memory://", web_enabled=False,
                     topic_partitions=4)


@pytest.fixture
async def producer(app: faust.App, redis_client: aioredis.Redis) -> AsyncIterator[Any]:
    """The app's producer, started on this test's loop (no worker)."""
    await app.producer.start()
    yield app.producer
    await app.producer.stop()
    await app.transport.close_clients()  # type: ignore[attr-defined]
