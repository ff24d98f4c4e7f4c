"""Logouts and the wrong-token lockout kept in a real redis-server, in this process: two stores
over one Redis behave as one (two nodes of a cluster), keys expire with what they count, and
while Redis does not answer each node falls back to what it knows, raising nothing, logging once,
and uses Redis again when it answers."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from structlog.testing import capture_logs

from sse_monitor.web.lockout import Lockout, TooManyFailures
from sse_monitor.web.lockout_redis import RedisLockout
from sse_monitor.web.redis_calls import RedisCalls, Unanswered
from sse_monitor.web.revocations_redis import RedisRevocations
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import eventually

PREFIX = "test-cluster"
TIMEOUT = 0.3  # each call to Redis is bounded by it
SIGNATURE, OTHER = "a" * 64, "b" * 64
GUESSER, NEIGHBOUR = "198.51.100.7", "2001:db8::8"


class Clients:
    """Redis clients as the app makes them, one per node; closed with the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened: list[Redis] = []

    def __call__(self) -> Redis:
        client = Redis.from_url(self.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        self.opened.append(client)
        return client


@pytest_asyncio.fixture
async def clients(own_redis: RedisServerProcess) -> AsyncIterator[Clients]:
    made = Clients(own_redis.url)
    yield made
    for client in made.opened:
        await client.aclose()


def revocations(clients: Clients, **options: Any) -> RedisRevocations:
    return RedisRevocations(clients(), PREFIX, timeout=TIMEOUT, retry_interval=0, **options)


def lockout(clients: Clients, limit: int = 3, window: float = 60) -> RedisLockout:
    local = Lockout(limit, window)
    return RedisLockout(clients(), PREFIX, local, timeout=TIMEOUT, retry_interval=0)


async def locked_for(store: RedisLockout, address: str) -> int | None:
    """The Retry-After this address would get, or None if it may present a token."""
    try:
        await store.check(address)
    except TooManyFailures as exc:
        return exc.retry_after
    return None


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# Revocations


async def test_a_logout_on_one_node_is_refused_on_the_other_at_once(clients: Clients) -> None:
    node_a, node_b = revocations(clients), revocations(clients)
    await node_a.open()
    await node_b.open()
    expires = int(time.time()) + 3600
    assert not await node_b.is_revoked(SIGNATURE)
    await node_a.revoke(SIGNATURE, expires)
    assert await node_b.is_revoked(SIGNATURE)  # the very next question: no refresh to wait for
    assert not await node_b.is_revoked(OTHER)

    redis = clients()
    key = f"{PREFIX}:revoked:{SIGNATURE}"
    assert await redis.get(key) == str(expires).encode()
    assert await redis.expiretime(key) == expires  # Redis forgets it with the cookie

    node_c = revocations(clients)
    await node_c.open()  # a node started later loads it
    assert await node_c.is_revoked(SIGNATURE)


async def test_redis_forgets_a_revocation_when_its_cookie_expires(clients: Clients) -> None:
    node_a, redis = revocations(clients), clients()
    await node_a.revoke(SIGNATURE, int(time.time()) + 1)
    await node_a.revoke(OTHER, int(time.time()) - 1)  # expired already: nothing to refuse
    assert await redis.exists(f"{PREFIX}:revoked:{SIGNATURE}") == 1
    assert await redis.exists(f"{PREFIX}:revoked:{OTHER}") == 0
    await eventually(
        lambda: _gone(redis, f"{PREFIX}:revoked:{SIGNATURE}"), timeout=5, what="the key's expiry"
    )
    assert not await revocations(clients).is_revoked(SIGNATURE)


async def _gone(redis: Redis, key: str) -> bool:
    return await redis.exists(key) == 0


async def test_while_redis_is_down_each_node_refuses_what_it_knows(
    clients: Clients, own_redis: RedisServerProcess
) -> None:
    node_a, node_b, node_c = revocations(clients), revocations(clients), revocations(clients)
    expires = int(time.time()) + 3600
    await node_a.revoke(SIGNATURE, expires)
    await node_c.open()  # loaded it
    assert await node_b.is_revoked(SIGNATURE)  # now known on B too

    await asyncio.to_thread(own_redis.stop)
    with capture_logs() as logs:
        for node in (node_a, node_b, node_c):
            assert await node.is_revoked(SIGNATURE)  # from what each knows: no call at all
        fresh = revocations(clients)
        await fresh.open()  # Redis down at start-up: logged, not raised
        assert not await fresh.is_revoked(SIGNATURE)  # it knows nothing: accepted meanwhile
        for _ in range(5):
            assert not await node_b.is_revoked(OTHER)
        await node_b.revoke(OTHER, expires)  # a logout meanwhile holds on its node at once
        assert await node_b.is_revoked(OTHER)
        assert not await node_a.is_revoked(OTHER)
    unreachable = events(logs, "access.redis_unreachable")
    assert len(unreachable) == 3  # one per store that asked (fresh, B, A), not one per call
    assert {entry["store"] for entry in unreachable} == {"revocations"}
    assert all(entry["log_level"] == "warning" for entry in unreachable)
    assert not [entry for entry in logs if entry["log_level"] == "error"]

    await asyncio.to_thread(own_redis.start)  # back, and empty (no persistence)
    with capture_logs() as logs:
        assert not await node_a.is_revoked(OTHER)  # A asks Redis again: B has not written yet
        assert not await node_b.is_revoked(OTHER.replace("b", "c"))  # B asks, then writes
        assert await node_a.is_revoked(OTHER)  # B's logout from the outage reached Redis
    assert len(events(logs, "access.redis_answering")) == 2  # A's store and B's
    assert not events(logs, "access.redis_unreachable")


async def test_a_redis_that_does_not_answer_costs_one_timeout(
    clients: Clients, own_redis: RedisServerProcess
) -> None:
    """A stopped process accepts connections and answers nothing: the call gives up at its
    timeout (redis-py's own retries would take several), and the store answers alone."""
    node_a = revocations(clients)
    await node_a.revoke(SIGNATURE, int(time.time()) + 3600)
    assert own_redis.proc is not None
    own_redis.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert not await node_a.is_revoked(OTHER)
        assert time.monotonic() - started < TIMEOUT + 0.5
        await node_a.revoke(OTHER, int(time.time()) + 3600)
        assert await node_a.is_revoked(OTHER)
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    other_node = revocations(clients)

    async def written() -> bool:
        await node_a.is_revoked("c" * 64)  # A asks Redis, and writes what it has not had
        return await other_node.is_revoked(OTHER)

    await eventually(written, what="the logout made meanwhile to reach Redis")


async def test_a_redis_restarted_between_two_calls_is_no_outage(
    clients: Clients, own_redis: RedisServerProcess
) -> None:
    """The client's connections from before the restart are closed: one failing is no reason to
    fall back while a new one answers."""
    node_a = revocations(clients)
    await asyncio.gather(node_a.is_revoked(SIGNATURE), node_a.is_revoked(OTHER))
    await asyncio.to_thread(own_redis.stop)
    await asyncio.to_thread(own_redis.start)
    with capture_logs() as logs:
        await node_a.revoke(SIGNATURE, int(time.time()) + 3600)
        assert await revocations(clients).is_revoked(SIGNATURE)
    assert not [entry for entry in logs if entry["event"].startswith("access.redis_")]


# The lockout


async def test_failures_spread_over_nodes_lock_the_address_on_every_node(
    clients: Clients,
) -> None:
    node_a, node_b = lockout(clients), lockout(clients)
    assert await node_a.record_failure(GUESSER) is False
    assert await node_b.record_failure(GUESSER) is False
    assert await locked_for(node_a, GUESSER) is None
    assert await node_a.record_failure(GUESSER) is True  # the third in the cluster
    for node in (node_a, node_b):
        wait = await locked_for(node, GUESSER)
        assert wait is not None and 59 <= wait <= 60
        assert await locked_for(node, NEIGHBOUR) is None  # per address

    redis, key = clients(), f"{PREFIX}:failures:{GUESSER}"
    assert await redis.zcard(key) == 3
    assert 0 < await redis.pttl(key) <= 60_000  # gone with the window


async def test_racing_failures_lock_once(clients: Clients) -> None:
    nodes = [lockout(clients) for _ in range(3)]
    locks = await asyncio.gather(*(node.record_failure(GUESSER) for node in nodes * 3))
    assert locks.count(True) == 1
    assert await clients().zcard(f"{PREFIX}:failures:{GUESSER}") == 3  # kept to the limit


async def test_the_window_slides_and_the_key_expires(clients: Clients) -> None:
    node_a, node_b = lockout(clients, limit=2, window=1), lockout(clients, limit=2, window=1)
    redis = clients()
    await node_a.record_failure(GUESSER)
    assert await node_b.record_failure(GUESSER) is True
    assert await locked_for(node_a, GUESSER) == 1
    await eventually(
        lambda: _may_try(node_a, GUESSER), timeout=5, what="the failures leaving the window"
    )
    await eventually(
        lambda: _gone(redis, f"{PREFIX}:failures:{GUESSER}"), timeout=5, what="the key's expiry"
    )
    assert await locked_for(node_b, GUESSER) is None


async def _may_try(store: RedisLockout, address: str) -> bool:
    return await locked_for(store, address) is None


async def test_while_redis_is_down_each_node_counts_its_own(
    clients: Clients, own_redis: RedisServerProcess
) -> None:
    node_a, node_b = lockout(clients), lockout(clients)
    assert await node_a.record_failure(GUESSER) is False  # counted in Redis and on A

    await asyncio.to_thread(own_redis.stop)
    with capture_logs() as logs:
        assert await locked_for(node_a, GUESSER) is None  # no exception, A's own count
        assert await node_a.record_failure(GUESSER) is False
        assert await node_a.record_failure(GUESSER) is True  # A's third: locked on A
        assert await locked_for(node_a, GUESSER) is not None
        assert await locked_for(node_b, GUESSER) is None  # B has seen none of them
    unreachable = events(logs, "access.redis_unreachable")
    assert [entry["store"] for entry in unreachable] == ["lockout", "lockout"]  # A, B: once each
    assert not [entry for entry in logs if entry["log_level"] == "error"]

    await asyncio.to_thread(own_redis.start)  # back, and empty
    with capture_logs() as logs:
        assert await node_b.record_failure(NEIGHBOUR) is False
        assert await node_b.record_failure(NEIGHBOUR) is False
        assert await node_a.record_failure(NEIGHBOUR) is True  # counted in Redis again
        assert await locked_for(node_a, GUESSER) is None  # Redis decides again (it forgot)
    assert [entry["store"] for entry in events(logs, "access.redis_answering")] == [
        "lockout",
        "lockout",
    ]


# The calls themselves


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_after_a_failure_redis_is_left_alone_for_the_retry_interval(
    clients: Clients, own_redis: RedisServerProcess
) -> None:
    clock, redis = Clock(), clients()
    calls = RedisCalls("test", "nothing", timeout=TIMEOUT, retry_interval=5, clock=clock)
    asked: list[str] = []

    def ping(who: str) -> Callable[[], Any]:
        async def call() -> Any:
            asked.append(who)
            return await redis.ping()

        return call

    assert await calls.run(ping("first")) is True
    await asyncio.to_thread(own_redis.stop)
    with pytest.raises(Unanswered):
        await calls.run(ping("fails"))
    await asyncio.to_thread(own_redis.start)
    clock.now = 104.9
    with pytest.raises(Unanswered):
        await calls.run(ping("too soon"))  # not even asked
    clock.now = 105.0
    assert await calls.run(ping("retry")) is True
    assert asked == ["first", "fails", "fails", "retry"]  # a lost connection: once more at once
    assert calls.answering
