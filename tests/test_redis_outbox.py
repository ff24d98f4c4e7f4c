"""The Redis outbox's own promises, on a real redis-server: every key under the cluster's prefix
and any body byte kept; a producer whose lease is gone writes nothing (the fence) but may still
record a delivery; a group closed while another node gathers or closes it loses and repeats no
transition; due() answers as SQLite's with many receivers; and a Redis that does not answer is
an OutboxUnavailable within the timeout, never a hang. What it shares with the SQLite outbox is
tested on both in test_notify_outbox.py."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sse_monitor.alerts.lifecycle import Transition
from sse_monitor.notify.outbox import (
    BuildEntry,
    NewDelivery,
    Notice,
    Outbox,
    OutboxFenced,
    OutboxUnavailable,
)
from sse_monitor.notify.redis_outbox import RedisOutbox
from tests.support.outboxes import NOW, PREFIX, Clock, Outboxes, build, entry, gathered
from tests.support.redis_server import RedisServerProcess, paused

T = TypeVar("T")

LEASE = f"{PREFIX}:leader"
TIMEOUT = 0.5  # the outbox's bound in the tests of a Redis that does not answer
LATE = 1.5  # seconds past TIMEOUT that a loaded machine may add before the error is raised
UNANSWERED_CLIENT = {
    "socket_timeout": TIMEOUT,
    "socket_connect_timeout": TIMEOUT,
    "retry": Retry(NoBackoff(), 10),  # redis-py's own retries: the outbox's bound still holds
}
UNAVAILABLE = r"the notification outbox \(redis test-cluster:notify\) failed "


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[Outboxes]:
    async with Outboxes("redis", redis_url, Clock()) as outboxes:
        yield outboxes


async def snapshot(client: redis.Redis) -> dict[bytes, Any]:
    """Every key of the Redis and what it holds."""
    found: dict[bytes, Any] = {}
    for key in await client.keys("*"):
        kind = (await client.type(key)).decode()
        if kind == "hash":
            found[key] = await client.hgetall(key)
        elif kind == "zset":
            found[key] = await client.zrange(key, 0, -1, withscores=True)
        else:
            found[key] = await client.get(key)
    return found


def on_another_node(url: str, act: Callable[[Outbox], Awaitable[T]]) -> T:
    """`act` done by another node (its own client, outbox and event loop), to the end, while
    this one waits: what happens between two steps of one of this node's calls."""
    answers: list[T] = []

    async def node() -> None:
        async with Outboxes("redis", url, Clock()) as other:
            answers.append(await act(await other.opened()))

    thread = threading.Thread(target=asyncio.run, args=(node(),))
    thread.start()
    thread.join(30)
    assert answers, "the other node did not finish"
    return answers[0]


async def test_every_key_is_under_the_prefix_and_clusters_do_not_meet(nodes: Outboxes) -> None:
    blue, green = await nodes.opened(prefix="blue"), await nodes.opened(prefix="green")
    await blue.gather([gathered("ops", "a1"), gathered("chat", "a1")])
    sent = await blue.close_group("ops", build)
    assert sent is not None
    await blue.delivered(sent)
    [waiting] = await blue.add([entry("pager", "k")])
    await blue.retry_at(waiting, NOW + 5, "HTTP 503")
    await green.add([entry("ops", "k")])
    assert [d.id for d in await blue.recent(10)] == [waiting, sent]
    assert [d.receiver for d in await green.recent(10)] == ["ops"]
    assert await green.closing() == {} and await green.notices(["a1"]) == {}
    keys = {key.decode() for key in await nodes.clients[0].keys("*")}
    assert "blue:notify:entry:1" in keys and "green:notify:entry:1" in keys
    assert all(key.startswith(("blue:notify:", "green:notify:")) for key in keys), keys


async def test_any_body_comes_back_whether_the_client_decodes_answers_or_not(
    redis_url: str,
) -> None:
    body = bytes(range(256)) + "é ✓".encode()
    async with (
        Outboxes("redis", redis_url, Clock(), decode_responses=True) as texts,
        Outboxes("redis", redis_url, Clock()) as binaries,
    ):
        text, binary = await texts.opened(), await binaries.opened()
        [entry_id] = await text.add([NewDelivery("ops", "k", body, {"x-sig": "é"}, (("a", "f"),))])
        await text.gather([gathered("chat", "a1")])
        await text.close_group("chat", build)
        await text.retry_at(entry_id, NOW + 1, "refused: é")
        for outbox in (text, binary):
            found = await outbox.get(entry_id)
            assert found is not None and found.body == body
            assert (found.headers, found.alerts) == ({"x-sig": "é"}, (("a", "f"),))
            assert found.last_error == "refused: é"
            assert [d.body for d in await outbox.recent(10)][1] == body
        assert await text.recent(10) == await binary.recent(10)
        assert await text.due(NOW + 1, 10) == await binary.due(NOW + 1, 10)
        assert await text.notices(["a1"]) == await binary.notices(["a1"]) != {}
        assert await text.closing() == await binary.closing() == {}


async def test_a_producer_whose_lease_is_gone_writes_nothing(nodes: Outboxes) -> None:
    client = nodes.client()
    await client.set(LEASE, "1:a:old")
    old = await nodes.opened(token="1:a:old")
    await old.gather([gathered("ops", "a1"), gathered("chat", "a1")])
    sent, pending = await old.add([entry("pager", "1"), entry("pager", "2")])

    await client.set(LEASE, "2:b:new")  # another node took the lease; we still believe we lead
    before = await snapshot(client)
    writes: dict[str, Callable[[], Awaitable[Any]]] = {
        "gather": lambda: old.gather([gathered("ops", "a2")]),
        "close_group": lambda: old.close_group("ops", build),
        "add": lambda: old.add([entry("ops", "3")]),
        "retry_at": lambda: old.retry_at(pending, NOW + 5, "HTTP 500"),
        "failed": lambda: old.failed(pending, "HTTP 400"),
        "prune": lambda: old.prune(NOW + 3600, keep=()),
        # writes nothing, but hands out messages to send: the successor's now
        "due": lambda: old.due(NOW, 10),
    }
    for name, write in writes.items():
        with pytest.raises(OutboxFenced, match=f"refused {name}: this producer no longer holds"):
            await write()
    await client.delete(LEASE)  # nobody holds it: still fenced
    with pytest.raises(OutboxFenced):
        await old.add([entry("ops", "3")])
    await client.set(LEASE, "2:b:new")
    assert await snapshot(client) == before

    # A receiver's 2xx is recorded whoever saw it: it only prevents a resend.
    await old.delivered(sent)
    found = await old.get(sent)
    assert found is not None and (found.state, found.attempts) == ("delivered", 1)

    new = await nodes.opened(token="2:b:new")
    assert [d.id for d in await new.due(NOW, 10)] == [pending]
    assert await new.close_group("ops", build) is not None
    assert await new.closing() == {"chat": NOW}


def counting(builds: list[Sequence[Transition]], then: Callable[[], object]) -> BuildEntry:
    """A builder that notes what it was given, then does `then()` before it answers."""

    def building(receiver: str, transitions: Sequence[Transition]) -> NewDelivery:
        builds.append(transitions)
        then()
        return build(receiver, transitions)

    return building


async def test_a_transition_gathered_while_its_group_closes_stays_gathering(
    nodes: Outboxes, redis_url: str
) -> None:
    producer = await nodes.opened()
    await producer.gather([gathered("ops", "a1", due=NOW + 1)])
    builds: list[Sequence[Transition]] = []

    def gather_more() -> None:
        on_another_node(redis_url, lambda other: other.gather([gathered("ops", "a2", due=NOW)]))

    entry_id = await producer.close_group("ops", counting(builds, gather_more))
    assert entry_id is not None and len(builds) == 1
    found = await producer.get(entry_id)
    assert found is not None and found.alerts == (("a1", "fired"),)
    assert await producer.closing() == {"ops": NOW}
    later = await producer.close_group("ops", build)
    assert later is not None
    found = await producer.get(later)
    assert found is not None and found.alerts == (("a2", "fired"),)


async def test_a_group_another_node_closed_meanwhile_is_read_again(
    nodes: Outboxes, redis_url: str
) -> None:
    producer = await nodes.opened()
    await producer.gather([gathered("ops", "a1"), gathered("ops", "a2")])
    builds: list[Sequence[Transition]] = []
    others: list[int | None] = []

    async def close_more(other: Outbox) -> int | None:
        await other.gather([gathered("ops", "a3")])
        closed = await other.close_group("ops", build)
        await other.gather([gathered("ops", "a4")])
        return closed

    def close_elsewhere() -> None:
        if len(builds) == 1:
            others.append(on_another_node(redis_url, close_more))

    entry_id = await producer.close_group("ops", counting(builds, close_elsewhere))
    assert [[t.alert.id for t in built] for built in builds] == [["a1", "a2"], ["a4"]]
    [other] = others
    assert other is not None and entry_id is not None and entry_id > other
    alerts = [(d.id, [alert_id for alert_id, _ in d.alerts]) for d in await producer.recent(10)]
    assert alerts == [(entry_id, ["a4"]), (other, ["a1", "a2", "a3"])]
    assert await producer.notices(["a1", "a4"]) == {
        "a1": [Notice("ops", "fired", "pending")],
        "a4": [Notice("ops", "fired", "pending")],
    }
    assert await producer.closing() == {}


async def test_a_group_closed_again_into_the_same_entry_is_that_entry(
    nodes: Outboxes, redis_url: str
) -> None:
    """As when a close's reply was lost and it goes again: nothing is closed twice."""
    producer = await nodes.opened()
    await producer.gather([gathered("ops", "a1")])
    builds: list[Sequence[Transition]] = []
    others: list[int | None] = []

    def close_the_same() -> None:
        others.append(on_another_node(redis_url, lambda o: o.close_group("ops", build)))
        on_another_node(redis_url, lambda o: o.gather([gathered("ops", "a2")]))

    entry_id = await producer.close_group("ops", counting(builds, close_the_same))
    assert entry_id is not None and others == [entry_id] and len(builds) == 1
    assert [d.id for d in await producer.recent(10)] == [entry_id]
    assert await producer.closing() == {"ops": NOW}  # a2 waits for the next close


async def test_due_answers_as_sqlite_with_many_receivers(redis_url: str, tmp_path: Path) -> None:
    """Twelve receivers (ids past 9: ordered as numbers, not as text), due at the same times,
    their entries retried, delivered and refused in a random order; both outboxes made alike."""
    clock = Clock()
    async with (
        Outboxes("sqlite", str(tmp_path / "n.db"), clock) as files,
        Outboxes("redis", redis_url, clock) as servers,
    ):
        both = [await files.opened(), await servers.opened()]
        receivers = [f"r{n}" for n in range(12)]
        for outbox in both:
            ids = await outbox.add([entry(name, "first") for name in reversed(receivers)])
            assert [d.id for d in await outbox.due(NOW, 20)] == ids
            assert [d.id for d in await outbox.due(NOW, 5)] == ids[:5]
        pending = list(range(1, 13))
        rng = random.Random(16)
        for step in range(150):
            action = rng.choice(("add", "add", "retry", "retry", "delivered", "failed"))
            if action == "add" or not pending:
                receiver = rng.choice(receivers)
                added = [await outbox.add([entry(receiver, f"{step}")]) for outbox in both]
                assert added[0] == added[1]
                pending += added[0]
                continue
            chosen, when = rng.choice(pending), NOW + rng.choice((0, 5, 10))
            for outbox in both:
                if action == "retry":
                    await outbox.retry_at(chosen, when, "HTTP 503")
                elif action == "delivered":
                    await outbox.delivered(chosen)
                else:
                    await outbox.failed(chosen, "HTTP 400")
            if action != "retry":
                pending.remove(chosen)
            for now, limit in ((NOW, 20), (NOW + 5, 3), (NOW + 10, 20)):
                in_sqlite, in_redis = [await outbox.due(now, limit) for outbox in both]
                assert in_sqlite == in_redis, (step, now, limit)
            in_sqlite, in_redis = [await outbox.next_attempt() for outbox in both]
            assert in_sqlite == in_redis, step
        in_sqlite, in_redis = [await outbox.recent(200) for outbox in both]
        assert in_sqlite == in_redis


@pytest.fixture
async def unanswered(own_redis: RedisServerProcess) -> AsyncIterator[Outbox]:
    """An outbox holding an entry and a transition, on a Redis of the test's own, whose client
    retries and times out as a node's may."""
    async with Outboxes("redis", own_redis.url, Clock(), **UNANSWERED_CLIENT) as outboxes:
        outbox = await outboxes.opened(timeout=TIMEOUT)
        await outbox.add([entry("ops", "1")])
        await outbox.gather([gathered("ops", "a1")])
        yield outbox


def every_call(outbox: Outbox) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "gather": lambda: outbox.gather([gathered("chat", "a1")]),
        "closing": outbox.closing,
        "close_group": lambda: outbox.close_group("ops", build),
        "add": lambda: outbox.add([entry("ops", "2")]),
        "due": lambda: outbox.due(NOW, 10),
        "next_attempt": outbox.next_attempt,
        "delivered": lambda: outbox.delivered(1),
        "retry_at": lambda: outbox.retry_at(1, NOW + 1, "x"),
        "failed": lambda: outbox.failed(1, "x"),
        "get": lambda: outbox.get(1),
        "recent": lambda: outbox.recent(10),
        "notices": lambda: outbox.notices(["a1"]),
        "prune": lambda: outbox.prune(NOW, keep=()),
    }


async def assert_each_call_is_unavailable_in_time(outbox: Outbox, url: str) -> None:
    for name, call in every_call(outbox).items():
        started = time.monotonic()
        with pytest.raises(OutboxUnavailable, match=UNAVAILABLE + name) as raised:
            await call()
        took = time.monotonic() - started
        assert took < TIMEOUT + LATE, f"{name} took {took:.2f} s"
        assert not isinstance(raised.value, OutboxFenced)
        assert url.split("//")[1].split("/")[0] not in str(raised.value)


async def test_a_paused_redis_is_unavailable_within_the_timeout_and_then_back(
    unanswered: Outbox, own_redis: RedisServerProcess
) -> None:
    with paused(own_redis):
        await assert_each_call_is_unavailable_in_time(unanswered, own_redis.url)
    # (Redis may still run a write it read before the pause: a timeout is no refusal.)
    assert 1 in [d.id for d in await unanswered.recent(10)]
    [later] = await unanswered.add([entry("chat", "later")])
    assert later > 1 and await unanswered.get(later) is not None


async def test_a_stopped_redis_is_unavailable_and_then_back(
    unanswered: Outbox, own_redis: RedisServerProcess
) -> None:
    await asyncio.to_thread(own_redis.stop)
    await assert_each_call_is_unavailable_in_time(unanswered, own_redis.url)
    await asyncio.to_thread(own_redis.start)  # empty: it keeps nothing on disk
    assert await unanswered.recent(10) == []
    assert await unanswered.add([entry("ops", "1")]) == [1]
    assert isinstance(unanswered, RedisOutbox) and unanswered.path == "redis test-cluster:notify"
