"""The driver's Lua scripts, run with raw EVALSHA and reloaded on NOSCRIPT (e.g. after a Redis restart).

redis-py's Script objects send a SCRIPT EXISTS round trip before every pipeline; raw EVALSHA does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

NAMES = ("produce", "commit", "heartbeat", "leave", "join", "sync")


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: bytes
    sha: str


def _load(name: str) -> LuaScript:
    source = resources.files(__package__).joinpath(f"{name}.lua").read_bytes()
    return LuaScript(name, source, hashlib.sha1(source).hexdigest())


SCRIPTS: dict[str, LuaScript] = {name: _load(name) for name in NAMES}


async def load_all(client: aioredis.Redis) -> None:
    for script in SCRIPTS.values():
        await client.script_load(script.source)


def evalsha_args(name: str, keys: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    """The argument list of `EVALSHA` for `execute_command` (usable in pipelines too)."""
    return ["EVALSHA", SCRIPTS[name].sha, len(keys), *keys, *args]


async def run(client: aioredis.Redis, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """Run one script, loading it first if this Redis has not seen it (or restarted since)."""
    command = evalsha_args(name, keys, args)
    try:
        return await client.execute_command(*command)
    except NoScriptError:
        await load_all(client)
        return await client.execute_command(*command)
