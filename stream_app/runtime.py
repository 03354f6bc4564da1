"""Resolve the backing services a process needs: configured URLs, or embedded servers in development."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from stream_app.embedded import EmbeddedServices
from stream_app.settings import Settings, SettingsError


@dataclass(frozen=True)
class ServiceURLs:
    database_url: str
    redis_url: str


def resolve_embedded(settings: Settings, *, need_redis: bool = True) -> tuple[ServiceURLs, EmbeddedServices]:
    """Start embedded servers for the URLs that are unset. Production never gets here with one unset."""
    if settings.production and (settings.database_url is None or (need_redis and settings.redis_url is None)):
        raise SettingsError(["production needs DATABASE_URL and REDIS_URL; embedded servers are for development"])
    embedded = EmbeddedServices(settings.embedded_dir)
    database_url = settings.database_url or embedded.start_postgres()
    redis_url = settings.redis_url or (embedded.start_redis() if need_redis else "")
    return ServiceURLs(database_url, redis_url), embedded


@asynccontextmanager
async def services(settings: Settings, *, need_redis: bool = True) -> AsyncIterator[ServiceURLs]:
    """URLs of PostgreSQL and Redis; embedded ones are started here and stopped on exit.

    A long-running supervisor (`solstake run`) keeps embedded servers up for its children, which then
    receive explicit URLs and never start servers of their own.
    """
    urls, embedded = resolve_embedded(settings, need_redis=need_redis)
    try:
        yield urls
    finally:
        embedded.stop()
