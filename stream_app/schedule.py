"""The fetch schedule an operator can change on a running system (`solstake schedule set production`).

One Redis key, `<REDIS_PREFIX>:schedule`, holding JSON `{"profile": "development" | "production" | "custom",
"interval": seconds, "set_at": unix seconds, "set_by": who}`. The fetcher reads it on every tick
(`fetch_interval`), so a change applies within a second without a restart; when the key is absent or
unreadable the interval comes from the settings (FETCH_INTERVAL, else the SOLSTAKE_PROFILE default).
This is the seed's `queue:scheduler setup production`.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from stream_app.settings import Settings

PROFILE_INTERVALS = {"development": 30.0, "production": 6 * 3600.0}
MIN_INTERVAL = 5.0


def schedule_key(prefix: str) -> str:
    return f"{prefix}:schedule"


@dataclass(frozen=True)
class Schedule:
    profile: str
    interval: float
    source: str  # "redis" (set by an operator) or "settings"
    set_at: float | None = None
    set_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "interval": self.interval, "source": self.source,
                "set_at": self.set_at, "set_by": self.set_by}


def from_settings(settings: Settings) -> Schedule:
    profile = "custom" if settings.fetch_interval is not None else settings.profile
    return Schedule(profile, settings.effective_fetch_interval, "settings")


def _decode(raw: bytes | str | None) -> Schedule | None:
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
        interval = float(data["interval"])
        profile = str(data.get("profile") or "custom")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if not interval >= MIN_INTERVAL:
        return None
    set_at = data.get("set_at")
    return Schedule(profile, interval, "redis", float(set_at) if isinstance(set_at, int | float) else None,
                    str(data["set_by"]) if data.get("set_by") else None)


async def read_schedule(redis: aioredis.Redis, settings: Settings) -> Schedule:
    """The schedule in force: the operator's Redis key if valid, else the settings' default."""
    stored = _decode(await redis.get(schedule_key(settings.redis_prefix)))
    return stored or from_settings(settings)


async def fetch_interval(redis: aioredis.Redis, settings: Settings) -> float:
    """Seconds between timer runs, for the fetcher's tick. Falls back to the settings if Redis fails."""
    try:
        return (await read_schedule(redis, settings)).interval
    except (aioredis.RedisError, OSError):
        return settings.effective_fetch_interval


async def set_schedule(redis: aioredis.Redis, settings: Settings, *, profile: str | None = None,
                       interval: float | None = None, set_by: str | None = None) -> Schedule:
    """Store a profile's interval (or an explicit one) for every worker to pick up on its next tick."""
    if profile is None and interval is None:
        raise ValueError("give a profile (development or production) or an interval")
    if profile is not None and profile not in PROFILE_INTERVALS:
        raise ValueError(f"profile must be one of {', '.join(PROFILE_INTERVALS)}")
    seconds = float(interval) if interval is not None else PROFILE_INTERVALS[str(profile)]
    if not seconds >= MIN_INTERVAL:
        raise ValueError(f"interval must be at least {MIN_INTERVAL:g} seconds")
    chosen = Schedule(profile or "custom", seconds, "redis", time.time(), set_by or _whoami())
    await redis.set(schedule_key(settings.redis_prefix), orjson.dumps({
        "profile": chosen.profile, "interval": chosen.interval, "set_at": chosen.set_at, "set_by": chosen.set_by,
    }))
    return chosen


async def clear_schedule(redis: aioredis.Redis, settings: Settings) -> Schedule:
    """Forget the operator's choice: the settings' interval applies again."""
    await redis.delete(schedule_key(settings.redis_prefix))
    return from_settings(settings)


def _whoami() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
