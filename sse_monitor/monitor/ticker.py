"""The producer's fixed-rate loop: a step every interval, start to start, whatever it costs.

An overrun (a step longer than the interval) skips the ticks it covered instead of bunching the
next ones up, so a slow upstream never makes the gateway poll faster to catch up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("sse_monitor.monitor.ticker")


async def run_every(interval: float, step: Callable[[], Awaitable[None]], *, name: str) -> None:
    """Run `step` every `interval` seconds until cancelled; `step` handles its own errors."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        await step()
        next_at += interval
        now = loop.time()
        if now > next_at:
            missed = int((now - next_at) // interval) + 1
            log.warning("ticker.overrun", loop=name, missed_ticks=missed, interval=interval)
            next_at += missed * interval
        await asyncio.sleep(next_at - now)
