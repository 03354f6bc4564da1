"""Stopping a task for sure, even when a library swallows its cancellation.

On Python 3.11, `asyncio.wait_for` loses a cancellation that arrives as the awaited operation completes
(CPython gh-86296, fixed in 3.12). redis-py wraps every command write in `wait_for` when the client has a
`socket_timeout`, so a task cancelled at that moment carries on into its next blocking read (XREAD BLOCK)
and a shutdown that waits for it hangs. Found by a test that hung once in ~10 runs; reproduced by
cancelling a fresh client's XREAD loop at random moments (23 of 200 cancellations were lost).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any], *, patience: float = 10.0, every: float = 1.0) -> bool:
    """Cancel `task` and wait until it has finished, cancelling again every `every` seconds.

    The repeat is spaced out so that a task's own clean-up (a `finally` that awaits) normally finishes before
    a second cancel could interrupt it; use it for tasks whose clean-up is short, like the live-hub tail.

    Returns False (and logs) if it is still running after `patience` seconds; never raises what the task raised.
    Cancelling the caller cancels the wait, not the guarantee: the task has been asked to stop.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while not task.done():
        task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("task %s did not stop within %.0f s of being cancelled", task.get_name(), patience)
            return False
        await asyncio.wait({task}, timeout=min(every, remaining))
    if not task.cancelled():
        task.exception()  # retrieved: an error on the way out is not "never retrieved" noise
    return True
