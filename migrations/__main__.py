"""`python -m migrations`: apply pending migrations to DATABASE_URL (the Procfile's release phase)."""

from __future__ import annotations

import asyncio
import sys

from migrations import MigrationError, migrate
from stream_app.runtime import services
from stream_app.settings import load_or_exit


def main() -> int:
    settings = load_or_exit()

    async def run() -> int:
        async with services(settings, need_redis=False) as urls:
            try:
                applied = await migrate(urls.database_url)
            except MigrationError as exc:
                print(f"migrations: {exc}", file=sys.stderr)
                return 1
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing to apply"
        print(f"migrations: {names}")
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    raise SystemExit(main())
