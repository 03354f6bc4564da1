"""`start_eagerly`: the first step runs inline; a coroutine that waits becomes a task with task semantics."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.transport.eager import start_eagerly


async def test_a_coroutine_that_never_waits_runs_to_completion_without_a_task() -> None:
    ran: list[int] = []

    async def fast() -> None:
        ran.append(1)

    assert start_eagerly(fast()) is None
    assert ran == [1]


async def test_an_exception_of_the_first_step_reaches_the_caller() -> None:
    async def boom() -> None:
        raise ValueError("decode failed")

    with pytest.raises(ValueError, match="decode failed"):
        start_eagerly(boom())


async def test_a_coroutine_that_waits_continues_in_a_task_and_returns_its_result() -> None:
    event = asyncio.Event()
    steps: list[str] = []

    async def slow() -> int:
        steps.append("first")
        await event.wait()
        steps.append("second")
        await asyncio.sleep(0)
        return 42

    task = start_eagerly(slow())
    assert task is not None and steps == ["first"]
    await asyncio.sleep(0.01)
    assert not task.done()
    event.set()
    assert await task == 42
    assert steps == ["first", "second"]


async def test_cancelling_the_task_cancels_the_waiting_coroutine() -> None:
    seen: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = start_eagerly(waits())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]


async def test_an_exception_after_waiting_is_the_tasks_exception() -> None:
    async def later() -> None:
        await asyncio.sleep(0)
        raise KeyError("late")

    task = start_eagerly(later())
    assert task is not None
    with pytest.raises(KeyError):
        await task


async def test_a_future_is_wrapped_as_is() -> None:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    assert start_eagerly(fut) is fut
