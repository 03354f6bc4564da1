"""`python -m migrations`: apply pending migrations to DATABASE_URL (the Procfile's release phase)."""

from __future__ import annotations

import asyncio
import sys

from migrations import MigrationError, migrate
from stream_app.runtime import services
from stream_app.settings import Settings, load_or_exit


async def apply_pending(settings: Settings, prog: str = "migrations") -> int:
    """Apply what is pending (embedded PostgreSQL in development when DATABASE_URL is unset); exit status."""
    async with services(settings, need_redis=False) as urls:
        try:
            applied = await migrate(urls.database_url)
        except MigrationError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 1
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
    print(f"{prog}: applied {names}" if names else f"{prog}: up to date, nothing to apply")
    return 0


def main() -> int:
    return asyncio.run(apply_pending(load_or_exit()))


if __name__ == "__main__":
    raise SystemExit(main())
