"""Run a coroutine's first step inline and only make a task of it if it actually has to wait.

Faust's drain loop hands every message to `Conductor.on_message` through `Service.wait_first(...)`, which
wraps the callback (and three events) in four tasks per message. For a message that is simply decoded and
put on a stream's queue the callback never suspends, so all that machinery only costs time.

`start_eagerly(coro)` performs the coroutine's first `send(None)` in the caller's task:

- it finished: `None` is returned (its exception, if it raised, propagates to the caller as it would from
  `await`);
- it suspended on a future: the rest of the coroutine continues inside a new `asyncio.Task`, which is
  returned so the caller can wait for it (or cancel it) exactly as for a task created from the start.

The continuation re-yields the future the coroutine suspended on (asyncio's Task protocol: the future's
`_asyncio_future_blocking` flag is already set by the coroutine's `await`), then forwards every value or
exception the task sends in, cancellation included. This is what Python 3.12's `eager_task_factory` does;
we run on 3.11.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any


def start_eagerly(awaitable: Awaitable[Any]) -> asyncio.Future[Any] | None:
    if not isinstance(awaitable, types.CoroutineType):  # a future or another awaitable: as upstream
        return asyncio.ensure_future(awaitable)
    coro = awaitable
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coro, yielded))


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _resume(coro, yielded)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    while True:
        try:
            value = yield yielded
        except BaseException as exc:  # thrown in by the task (CancelledError) or by close() (GeneratorExit)
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(value)
            except StopIteration as stop:
                return stop.value
