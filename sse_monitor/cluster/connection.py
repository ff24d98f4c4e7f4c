"""Redis clients for cluster mode, every call bounded by SSE_MONITOR_REDIS_TIMEOUT."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as ConnectionLost
from redis.exceptions import RedisError

from sse_monitor.settings import Settings

T = TypeVar("T")


def connect(settings: Settings, *, blocking_for: float = 0.0) -> Redis:
    """A client (a pool of connections) to the cluster's Redis.

    `blocking_for` is the longest a command may block server-side on purpose (XREAD BLOCK):
    the socket waits that much longer before it gives up.
    """
    assert settings.redis_url is not None
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout + blocking_for,
        socket_connect_timeout=settings.redis_timeout,
        retry_on_timeout=False,
        health_check_interval=0,
    )


async def bounded(command: Callable[[], Awaitable[T]], within: float) -> T:
    """`command()` within `within` s, or TimeoutError: a redis-py client may retry a call
    several times, each up to its socket timeout. A connection Redis closed (it restarted)
    fails once: the command goes again at once, on a new connection, before Redis counts as
    away."""
    async with asyncio.timeout(within):
        try:
            return await command()
        except ConnectionLost:
            return await command()


async def answered(
    command: Callable[[], Awaitable[T]],
    within: float,
    unavailable: Callable[[str], Exception],
    failing: str,
) -> T:
    """`command()` within `within` s (see `bounded`), or `unavailable("{failing}: {why}")`,
    `why` what went wrong (no answer in time, or the error's type): never the server's address
    or password."""
    try:
        return await bounded(command, within=within)
    except (RedisError, OSError) as exc:  # OSError: the bound's TimeoutError too
        why = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
        raise unavailable(f"{failing}: {why}") from None
