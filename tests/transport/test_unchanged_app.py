"""An ordinary Faust app (Record model, group_by repartition, windowed table) runs unchanged on redis://."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from stream_app.transport.keys import KeySpace

from .workers import ROOT


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_pageviews_app_counts_through_repartition_and_windowed_table(
    redis_url: str, redis_prefix: str, redis_client: aioredis.Redis, tmp_path: Path, monkeypatch: Any
) -> None:
    broker = f"{redis_url}?prefix={redis_prefix}&janitor_interval=0"
    env = dict(os.environ, PV_BROKER=broker, PYTHONPATH=str(ROOT))
    log = tmp_path / "worker.out"
    worker = spawn(env, log)
    keys = KeySpace(redis_prefix)
    monkeypatch.setenv("PV_BROKER", broker)  # this process is a producer-only client of the same app
    sys.modules.pop("tests.transport.pageviews_app", None)
    pageviews_app: Any = importlib.import_module("tests.transport.pageviews_app")
    app = pageviews_app.app
    try:
        await app.producer.start()
        views = [pageviews_app.PageView(id=f"page{i % 7}", user=f"u{i}") for i in range(700)]
        for view in views:
            await pageviews_app.page_view_topic.send(value=view)
        await app.producer.flush()
        expected = Counter(v.id for v in views)
        changelog = "pageviews-page_views-changelog"
        deadline = time.monotonic() + 60
        totals: Counter[str] = Counter()
        while time.monotonic() < deadline:
            totals = await windowed_totals(redis_client, keys, changelog)
            if totals == expected:
                break
            await asyncio.sleep(0.5)
        assert totals == expected, f"{changelog}: {totals} != {expected}\n{log.read_text()[-3000:]}"
        topics: Any = await redis_client.hgetall(keys.topics)
        assert any(t.endswith(b"-PageView.id-repartition") for t in topics)  # internal topic declared
    finally:
        worker.terminate()
        worker.wait(30)
        await app.producer.stop()
        await app.transport.close_clients()  # type: ignore[attr-defined]


def spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.transport.pageviews_app"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


async def windowed_totals(client: aioredis.Redis, keys: KeySpace, changelog: str) -> Counter[str]:
    """Last value of each (page, window) in the changelog, summed per page."""
    last: dict[str, int] = {}
    for p in range(4):
        entries: Any = await client.xrange(keys.stream(changelog, p), "-", "+")
        for _, fields in entries:
            last[fields[b"k"].decode()] = json.loads(fields[b"v"])
    totals: Counter[str] = Counter()
    for key, value in last.items():
        page, _window = json.loads(key)
        totals[page] += value
    return totals
