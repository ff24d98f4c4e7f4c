"""The leadership loop (cluster/leadership.py) on a real redis-server: when a producer stops.

A holder must stop producing before its lease can lapse, whatever its Redis calls are doing:
otherwise another node takes the lease while it still polls, and KATO sees two producers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from sse_monitor.cluster.leadership import Leadership
from sse_monitor.cluster.lease import Lease
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import eventually

TTL = 3.0
REDIS_TIMEOUT = 0.9  # under half the TTL, as the settings require


class TimedLease(Lease):
    """A lease that notes when each renewal it had confirmed was sent."""

    confirmed: list[float]

    async def renew(self, token: str) -> bool:
        sent = time.monotonic()
        renewed = await super().renew(token)
        if renewed:
            self.confirmed.append(sent)
        return renewed


class Term:
    """A producer's term that only notes when it ended."""

    def __init__(self) -> None:
        self.ended_at: float | None = None

    async def aclose(self) -> None:
        self.ended_at = time.monotonic()


@contextlib.asynccontextmanager
async def leading(url: str, begin_takes: float = 0.0) -> AsyncIterator[tuple[TimedLease, Term]]:
    """A Leadership loop running on `url` until it holds the lease; its lease and its term."""
    redis = Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    lease = TimedLease(redis, prefix="test-leadership", node="a", ttl=TTL)
    lease.confirmed = []
    term = Term()

    async def begin(token: str) -> Term:
        await asyncio.sleep(begin_takes)  # reading the log, loading the alerts
        return term

    leadership = Leadership(lease, ttl=TTL, begin=begin, node="a")
    task = asyncio.create_task(leadership.run())
    try:
        await eventually(lambda: leadership.role == "producer", 10, "the lease")
        yield lease, term
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await redis.aclose()


@pytest.fixture
def redis_process(own_redis: RedisServerProcess) -> Iterator[RedisServerProcess]:
    """The test's own Redis, let go again if the test stopped it (SIGSTOP)."""
    yield own_redis
    if own_redis.running:
        assert own_redis.proc is not None
        own_redis.proc.send_signal(signal.SIGCONT)


async def test_a_holder_whose_redis_hangs_stops_before_its_lease_can_lapse(
    redis_process: RedisServerProcess,
) -> None:
    async with leading(redis_process.url) as (lease, term):
        await eventually(lambda: lease.confirmed, 10, "a renewal")
        assert redis_process.proc is not None
        redis_process.proc.send_signal(signal.SIGSTOP)  # every call now waits for its timeout
        await eventually(lambda: term.ended_at is not None, 3 * TTL, "the term's end")
        assert term.ended_at is not None
        # The lease runs at least a TTL from the sending of the last renewal Redis took.
        assert term.ended_at < lease.confirmed[-1] + TTL


async def test_a_term_that_starts_slowly_renews_at_once_and_keeps_its_lease(
    redis_process: RedisServerProcess,
) -> None:
    async with leading(redis_process.url, begin_takes=TTL * 0.6) as (lease, term):
        await eventually(lambda: len(lease.confirmed) >= 3, 3 * TTL, "three renewals")
        assert term.ended_at is None
