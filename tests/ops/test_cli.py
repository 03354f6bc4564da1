"""The operator's commands against real PostgreSQL and Redis (the ones needing a live worker are in
test_worker_run.py): metrics summary / prometheus, schedule show|set|clear (and the fetcher obeying it),
db verify, token, and a clear exit when no system is running."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
import pytest

from stream_app.cli import main as solstake
from stream_app.schedule import fetch_interval, schedule_key
from stream_app.settings import Settings
from tests.ops.conftest import promtool_check, samples, seed_business, value

pytestmark = pytest.mark.timeout(90)  # a hang fails this test instead of stalling the suite


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    assert settings.database_url and settings.redis_url
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_PREFIX": settings.redis_prefix, "JWT_SECRET": "c" * 40, "SIMULATOR_FALLBACK": "false",
           "SOLANA_RPC_URL": "http://127.0.0.1:9/", "FETCH_INTERVAL": "", "SOLSTAKE_PROFILE": "development"}
    for key, val in env.items():
        monkeypatch.setenv(key, val)
    return env


async def run(*argv: str) -> int:
    return await asyncio.to_thread(solstake, list(argv))


async def test_metrics_summary_shows_the_seeds_business_numbers(
    cli_env: dict[str, str], db_pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_business(db_pool)
    assert await run("metrics", "summary") == 0
    out = capsys.readouterr().out
    assert "6 known, 1 delinquent, 5 with a score" in out, out
    assert "completion rate   50.0% of the last 4 finished runs" in out
    assert "coverage 83.3%" in out
    assert "since the last completed run" in out
    assert "development: every 30s (settings)" in out
    assert "response cache    hit rate n/a" in out and "maxmemory-policy" in out

    assert await run("metrics", "summary", "--json") == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["validators"] == 6 and data["scored"] == 5
    assert data["completion_rate"] == pytest.approx(0.5)
    assert data["coverage"] == pytest.approx(5 / 6)
    assert [b["count"] for b in data["score_buckets"]] == [1, 2, 2, 2, 2, 3, 3, 3, 3, 5]
    assert data["runs_by_status"] == {"running": 0, "completed": 2, "partial": 1, "failed": 1}
    assert 35 <= data["freshness_seconds"] <= 600
    assert data["cache"] == {"hits": 0, "misses": 0, "hit_rate": None}


async def test_metrics_prometheus_prints_a_valid_exposition(
    cli_env: dict[str, str], db_pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_business(db_pool)
    assert await run("metrics", "prometheus") == 0
    text = capsys.readouterr().out
    parsed = samples(text)
    assert value(parsed, "solstake_validators") == 6
    assert value(parsed, "solstake_validator_trust_score_count") == 5
    assert value(parsed, "solstake_business_metrics_up") == 1
    assert any(name == "solstake_build_info" for name, _ in parsed)
    complaints = promtool_check(text)
    assert complaints in (None, ""), complaints


async def test_metrics_health_fails_when_the_rpc_is_unreachable(
    cli_env: dict[str, str], db_pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("metrics", "health", "--json") == 1
    data = orjson.loads(capsys.readouterr().out)
    assert data["checks"]["db"]["status"] == "ok" and data["checks"]["redis"]["status"] == "ok"
    assert data["checks"]["solana"]["status"] == "fail"
    assert data["checks"]["workers"]["status"] == "fail"  # nothing is consuming
    assert data["status"] == "failing"


async def test_schedule_set_production_changes_the_running_fetchers_interval(
    cli_env: dict[str, str], settings: Settings, redis_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await fetch_interval(redis_client, settings) == 30.0
    assert await run("schedule", "show") == 0
    assert "development, a run every 30s" in capsys.readouterr().out

    assert await run("schedule", "set", "production") == 0
    assert "production, a run every 6h 00m" in capsys.readouterr().out
    assert await fetch_interval(redis_client, settings) == 6 * 3600.0  # what the fetcher's tick reads
    assert await run("schedule", "show", "--json") == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["profile"] == "production" and shown["source"] == "redis"

    assert await run("schedule", "set", "--every", "120") == 0
    assert await fetch_interval(redis_client, settings) == 120.0
    assert await run("schedule", "set", "--every", "1") == 2  # below the minimum: refused, nothing changed
    assert "at least 5 seconds" in capsys.readouterr().err
    assert await fetch_interval(redis_client, settings) == 120.0
    assert await run("schedule", "set") == 2

    assert await run("schedule", "setup", "development") == 0  # the seed's `queue:scheduler setup <profile>`
    assert await fetch_interval(redis_client, settings) == 30.0
    assert await run("schedule", "list") == 0
    assert "development, a run every 30s (set by" in capsys.readouterr().out

    assert await run("schedule", "clear") == 0
    assert await redis_client.exists(schedule_key(settings.redis_prefix)) == 0
    assert await fetch_interval(redis_client, settings) == 30.0


async def test_the_fetcher_obeys_the_schedule_key(
    cli_env: dict[str, str], settings: Settings, db_pool: asyncpg.Pool, redis_client: Any
) -> None:
    from stream_app.fetcher import Fetcher

    async def produce(*_args: Any) -> None:
        return None

    fetcher = Fetcher(settings, db_pool, redis_client, produce)
    await db_pool.execute(
        "INSERT INTO scoring_runs (id, status, run_date, trigger) VALUES (gen_random_uuid(), 'completed', "
        "now() - interval '60 seconds', 'timer')")
    assert await fetcher.due() is True  # development: every 30 s, last run 60 s ago
    assert await run("schedule", "set", "production") == 0
    assert await fetcher.due() is False  # production: every 6 h
    await redis_client.set(schedule_key(settings.redis_prefix), b"{not json")  # garbage: settings apply
    assert await fetcher.due() is True


async def test_db_verify_passes_on_consistent_rows_and_names_the_broken_check(
    cli_env: dict[str, str], db_pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("db", "verify") == 0
    assert "database is consistent" in capsys.readouterr().out
    await db_pool.execute(
        "INSERT INTO scoring_runs (id, status, validator_count, success_count, completed_at) "
        "VALUES (gen_random_uuid(), 'completed', 3, 2, now())")  # counters without rows
    assert await run("db", "verify") == 1
    out = capsys.readouterr().out
    assert "FAIL run counters match their rows" in out and "check(s) failed" in out


async def test_token_prints_one_token_per_role(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("token") == 0
    lines = capsys.readouterr().out.splitlines()
    roles = {line.split(":", 1)[0] for line in lines if ":" in line}
    assert {"viewer", "user", "admin"} <= roles
    assert await run("token", "--role", "admin") == 0
    token = capsys.readouterr().out.strip()
    assert token.count(".") == 2


async def test_commands_exit_clearly_when_no_system_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SOLSTAKE_DATA_DIR", str(tmp_path / "nothing-here"))
    for argv in (("metrics", "summary"), ("stream", "monitor"), ("schedule", "show"), ("score", "all")):
        assert await run(*argv) == 2, argv
        assert "no running system found" in capsys.readouterr().err


async def test_stream_monitor_watches_until_its_count(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("stream", "monitor", "--watch", "0.1", "--count", "2") == 0
    out = capsys.readouterr().out
    assert out.count("no topics yet") == 2, out
