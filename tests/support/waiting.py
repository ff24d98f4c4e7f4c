"""Waiting for a condition with a deadline, instead of sleeping "long enough" and hoping.

A loaded machine makes everything slower but changes no order the gateway promises: a test
waits for the state it expects (bounded, so a real failure still fails), never for a time.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

POLL_SECONDS = 0.05


def wait_until(predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Call `predicate` until it returns something truthy, and return that; fail at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_SECONDS)


async def eventually(
    predicate: Callable[[], Any], timeout: float = 10, what: str = "condition"
) -> Any:
    """`wait_until` for async tests: the predicate may be sync or async."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)
