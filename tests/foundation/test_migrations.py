"""The migration runner against real PostgreSQL: order, idempotence, checksums, the advisory lock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from migrations import MIGRATIONS_DIR, MigrationError, discover, migrate
from tests.conftest import Services, with_database


@pytest.fixture
async def empty_db(services: Services) -> AsyncIterator[str]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(services.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield with_database(services.database_url, name)
    admin = await asyncpg.connect(services.database_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def test_applies_all_then_is_a_no_op(empty_db: str) -> None:
    applied = await migrate(empty_db)
    assert [m.version for m in applied] == [m.version for m in discover()]
    assert await migrate(empty_db) == []
    conn = await asyncpg.connect(empty_db)
    try:
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"validators", "scoring_runs", "trust_scores", "audit_log", "users", "stake_accounts",
                "validator_epoch_history", "commission_events", "schema_migrations"} <= tables
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["checksum"]) for r in rows] == [(m.version, m.checksum) for m in discover()]
    finally:
        await conn.close()


async def test_concurrent_runners_apply_each_migration_once(empty_db: str) -> None:
    results = await asyncio.gather(*(migrate(empty_db) for _ in range(4)))
    assert sum(len(r) for r in results) == len(discover())


async def test_edited_applied_migration_is_refused(empty_db: str, tmp_path: Path) -> None:
    for path in MIGRATIONS_DIR.glob("*.sql"):
        (tmp_path / path.name).write_text(path.read_text())
    await migrate(empty_db, tmp_path)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        await migrate(empty_db, tmp_path)


async def test_new_migration_applies_and_failed_one_rolls_back(empty_db: str, tmp_path: Path) -> None:
    for path in MIGRATIONS_DIR.glob("*.sql"):
        (tmp_path / path.name).write_text(path.read_text())
    await migrate(empty_db, tmp_path)
    (tmp_path / "9998_add_note.sql").write_text("ALTER TABLE validators ADD COLUMN note text;")
    (tmp_path / "9999_broken.sql").write_text("CREATE TABLE half (id int); SELECT * FROM no_such_table;")
    with pytest.raises(asyncpg.UndefinedTableError):
        await migrate(empty_db, tmp_path)
    conn = await asyncpg.connect(empty_db)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        assert 9998 in versions and 9999 not in versions
        assert await conn.fetchval("SELECT to_regclass('half')") is None  # rolled back whole
    finally:
        await conn.close()


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_lower_snake"):
        discover(tmp_path)


async def test_sink_keys_make_score_rows_idempotent(db_pool: asyncpg.Pool) -> None:
    run_id = uuid.uuid4()
    async with db_pool.acquire() as conn:
        vid = await conn.fetchval(
            "INSERT INTO validators (vote_account, validator_pubkey) VALUES ('V1', 'N1') RETURNING id")
        await conn.execute("INSERT INTO scoring_runs (id) VALUES ($1)", run_id)
        insert = ("INSERT INTO trust_scores (validator_id, scoring_run_id, score, scoring_version) "
                  "VALUES ($1, $2, $3, 'v1') ON CONFLICT (scoring_run_id, validator_id) DO UPDATE SET score = $3")
        await conn.execute(insert, vid, run_id, 50.0)
        await conn.execute(insert, vid, run_id, 60.0)
        assert await conn.fetchval("SELECT count(*) FROM trust_scores") == 1
        other_run = uuid.uuid4()
        await conn.execute("INSERT INTO scoring_runs (id) VALUES ($1)", other_run)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(insert, vid, other_run, 101.0)  # scores live in [0, 100]
