"""A service's background loops (consumers, the outbox relay, timers) run as one group for as long as it runs.

Each loop is meant to run until it is cancelled; one that ends with an exception is logged when it dies, with its
traceback, not when the service stops (which may be days later, and then nobody looks). On exit every loop is
cancelled and awaited, so nothing of the service is still running when its clients and engine are closed.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def background(loops: Mapping[str, Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """Run each of ``loops`` as a task named by its key; cancel them all and wait for them on exit."""
    tasks = [asyncio.create_task(loop, name=name) for name, loop in loops.items()]
    for task in tasks:
        task.add_done_callback(_report_crash)
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _report_crash(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s died", task.get_name(), exc_info=task.exception())
