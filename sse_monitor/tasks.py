"""Stopping background tasks for sure.

One `cancel()` is not always enough: in Python 3.11, `asyncio.wait_for` (which redis-py and
others use inside their calls) drops a cancellation that arrives as the inner call completes
(CPython gh-86296), and the task runs on. A loop that kept running would hold a stopped
producer alive for ever, so tasks are cancelled until they end, within a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog

log = structlog.get_logger("sse_monitor.tasks")

RECANCEL_SECONDS = 0.1  # how often a task that ignored its cancellation is cancelled again


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]], *, within: float = 10.0) -> None:
    """Cancel every task, again and again until each has ended or `within` seconds passed (a
    task still running then is logged and left)."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
    for task in pending:
        log.warning("task.not_stopped", task=task.get_name(), within=within)
    for task in tasks:
        if task.done() and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()  # retrieved: no "exception never retrieved" at exit
