"""Redis clients for cluster mode, every call bounded by SSE_MONITOR_REDIS_TIMEOUT."""

from __future__ import annotations

from redis.asyncio import Redis

from sse_monitor.settings import Settings


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
