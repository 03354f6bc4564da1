"""Shared subscriptions: sockets asking the same subscription (same document, variables and caller
scope) share one engine stream, so each change is rendered and encoded once, not once per socket.

Each member still gets its own snapshot first (computed after it joined), then only the shared
changes whose version is newer than that snapshot: nothing is missed and nothing repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from http_app.graphql.errors import INTERNAL, ApiError, error_body
from http_app.keys import EXECUTOR

log = logging.getLogger("http_app.graphql.fanout")

GroupKey = tuple[str, str, str | None, bytes]  # scope, query, operation name, canonical variables
Send = Callable[[str], Awaitable[None]]  # sends one encoded payload (the JSON of an ExecutionResult)


def version_of(result: dict[str, Any]) -> tuple[int, int] | None:
    """The live-stream version a subscription result carries (`<root field>.version`), parsed."""
    data = result.get("data")
    if not isinstance(data, dict) or len(data) != 1:
        return None
    root = next(iter(data.values()))
    version = root.get("version") if isinstance(root, dict) else None
    if not isinstance(version, str) or "-" not in version:
        return None
    ms, _, seq = version.partition("-")
    return (int(ms), int(seq)) if ms.isdigit() and seq.isdigit() else None


@dataclass(eq=False)  # identity semantics: members live in sets
class Member:
    send: Send
    snapshot_version: tuple[int, int] | None = None  # None while its snapshot is being computed
    backlog: list[tuple[tuple[int, int] | None, str]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None  # encoded error result that ended the stream


class Group:
    def __init__(self, key: GroupKey, groups: SharedSubscriptions, context: dict[str, Any],
                 variables: dict[str, Any] | None) -> None:
        self.key = key
        self.groups = groups
        self.context = context
        self.variables = variables
        self.members: set[Member] = set()
        self.task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()  # set once the stream receives every later live event
        context["on_subscribed"] = self.subscribed

    async def ready(self) -> None:
        """Wait until the shared stream listens (or has already ended), so no change slips between it
        and a member's snapshot."""
        assert self.task is not None
        waiter = asyncio.ensure_future(self.subscribed.wait())
        await asyncio.wait({waiter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    async def run(self) -> None:
        _scope, query, operation_name, _ = self.key
        executor = self.groups.app[EXECUTOR]
        error: str | None = None
        self.context["changes_only"] = True  # members compute their own snapshots when they join
        try:
            async for result in executor.subscribe(query, operation_name, self.variables, self.context):
                encoded = orjson.dumps(result).decode()
                if result.get("errors") and result.get("data") is None:
                    error = encoded
                    break
                await self.broadcast(version_of(result), encoded)
        except asyncio.CancelledError:
            raise
        except ApiError as exc:
            error = orjson.dumps({"data": None, "errors": [error_body(str(exc), exc.code)]}).decode()
        except Exception:
            log.exception("shared subscription failed")
            error = orjson.dumps({"data": None, "errors": [error_body("Internal server error", INTERNAL)]}).decode()
        finally:
            self.groups.discard(self)
        for member in list(self.members):
            member.error = error
            member.ended.set()

    async def broadcast(self, version: tuple[int, int] | None, encoded: str) -> None:
        sends = []
        for member in list(self.members):
            if member.snapshot_version is None:
                member.backlog.append((version, encoded))
            elif version is None or version > member.snapshot_version:
                sends.append(member.send(encoded))
        if sends:
            await asyncio.gather(*sends, return_exceptions=True)


class SharedSubscriptions:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._groups: dict[GroupKey, Group] = {}

    def discard(self, group: Group) -> None:
        if self._groups.get(group.key) is group:
            del self._groups[group.key]

    @property
    def group_count(self) -> int:
        return len(self._groups)

    async def serve(self, key: GroupKey, variables: dict[str, Any] | None,
                    context_factory: Callable[[], dict[str, Any]], send: Send) -> None:
        """Stream one subscription to `send` until cancelled or the shared stream ends."""
        group = self._groups.get(key)
        if group is None or group.task is None or group.task.done():
            group = Group(key, self, context_factory(), variables)
            self._groups[key] = group
            group.task = asyncio.create_task(group.run(), name="shared-subscription")
        member = Member(send)
        group.members.add(member)
        try:
            await group.ready()
            snapshot = await self._snapshot(key, variables, context_factory())
            if snapshot is None:  # no current state to show (e.g. no commission change yet)
                member.snapshot_version = (0, 0)
            else:
                await send(orjson.dumps(snapshot).decode())
                if snapshot.get("errors") and snapshot.get("data") is None:
                    return
                member.snapshot_version = version_of(snapshot) or (0, 0)
            for version, encoded in member.backlog:
                if version is None or version > member.snapshot_version:
                    await send(encoded)
            member.backlog.clear()
            await member.ended.wait()
            if member.error is not None:
                await send(member.error)
        finally:
            group.members.discard(member)
            if not group.members and group.task is not None:
                group.task.cancel()
                self.discard(group)

    async def _snapshot(self, key: GroupKey, variables: dict[str, Any] | None,
                        context: dict[str, Any]) -> dict[str, Any] | None:
        """The snapshot of a private, snapshot-only stream, or None when there is no current state."""
        _scope, query, operation_name, _ = key
        context["snapshot_only"] = True  # the sources stop after the snapshot (see subscriptions.py)
        stream = self.app[EXECUTOR].subscribe(query, operation_name, variables, context)
        try:
            first: dict[str, Any] = await stream.__anext__()
            return first
        except StopAsyncIteration:
            return None
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]


SHARED: web.AppKey[SharedSubscriptions] = web.AppKey("shared_subscriptions", SharedSubscriptions)
