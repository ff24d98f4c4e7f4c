"""The calls one access store makes to the cluster's Redis: bounded, and allowed to fail.

The logged-out cookies and the wrong-token counts live in Redis in cluster mode, and requests
ask it. Each call here is bounded by the Redis timeout (on top of the client's socket timeouts,
which a redis-py retry can multiply). When one fails, the store answers from what this process
knows and Redis is not asked again for `retry_interval` seconds, so a Redis that does not answer
costs the requests meanwhile nothing; then one request tries again. Only the changes are logged:
one warning when the store falls back, one info line when Redis answers again. Never an error:
the clients are not to blame, and the store still answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from redis.exceptions import ConnectionError as ConnectionLost
from redis.exceptions import RedisError

log = structlog.get_logger("sse_monitor.web.redis_calls")

T = TypeVar("T")

# What a call to Redis raises when Redis cannot answer it; OSError includes the TimeoutError of
# our own bound.
REDIS_ERRORS = (RedisError, OSError)
RETRY_INTERVAL = 1.0


class Unanswered(Exception):
    """Redis did not answer this call, or failed moments ago and was not asked."""


class RedisCalls:
    """Calls to Redis on behalf of `store`, which answers `fallback` while they fail."""

    def __init__(
        self,
        store: str,
        fallback: str,
        *,
        timeout: float,
        retry_interval: float = RETRY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._fallback = fallback
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self.answering = True  # as far as we know: the first failure is the first change
        self._retry_at = 0.0

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """What `call()` returns, within the timeout; Unanswered if Redis fails it, or failed
        less than `retry_interval` ago."""
        if not self.answering:
            now = self._clock()
            if now < self._retry_at:
                raise Unanswered
            self._retry_at = now + self._retry_interval  # this call tries; the others wait
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    result = await call()
                except ConnectionLost:
                    # A connection Redis closed (it restarted) fails once; a new one, which
                    # the client opens now, tells whether Redis is there.
                    result = await call()
        except REDIS_ERRORS as exc:
            self._failed(exc)
            raise Unanswered from None
        if not self.answering:
            self.answering = True
            log.info("access.redis_answering", store=self.store)
        return result

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = self._clock() + self._retry_interval
        if self.answering:
            self.answering = False
            log.warning(
                "access.redis_unreachable",
                store=self.store,
                fallback=self._fallback,
                error=str(exc) or type(exc).__name__,
                retry_seconds=self._retry_interval,
            )
