"""Embedded servers: a real start, reuse by a second start, and a clean stop."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncpg
import pytest
import redis

from stream_app.embedded import EmbeddedPostgres, EmbeddedRedis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redis_start_reuse_stop_keeps_data(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path, port=_free_port())
    url = first.start()
    client = redis.Redis.from_url(url)
    assert client.info("server")["redis_version"].startswith("6.2")
    client.xadd("s", {"v": "1"})
    second = EmbeddedRedis(tmp_path, port=_free_port())  # adopts the running server instead of starting twice
    assert second.start() == url
    first.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    third = EmbeddedRedis(tmp_path, port=_free_port())
    url3 = third.start()  # restarted from the AOF
    try:
        assert redis.Redis.from_url(url3).xlen("s") == 1
    finally:
        third.stop()


@pytest.mark.timeout(120)
async def test_postgres_start_reuse_stop(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path)
    url = pg.start()
    try:
        conn = await asyncpg.connect(url)
        assert int(await conn.fetchval("SHOW server_version_num")) >= 150000
        await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        await conn.close()
        again = EmbeddedPostgres(tmp_path)
        assert again.start() == url  # adopted, not started twice
    finally:
        pg.stop()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(url, timeout=2)
    restarted = EmbeddedPostgres(tmp_path)
    url2 = restarted.start()
    try:
        conn = await asyncpg.connect(url2)
        assert await conn.fetchval("SELECT x FROM kept") == 7
        await conn.close()
    finally:
        restarted.stop()
