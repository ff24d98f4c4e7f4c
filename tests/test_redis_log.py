"""The cluster's log (bus/redis_log.py) and lease, in-process, against a real redis-server.

Two `RedisLog`s on one Redis are two nodes: what one appends, both deliver, with the same ids;
an id from one resumes on the other; a stale token appends nothing; a log whose Redis lost its
data answers every old id with a `reset`, never a silent gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from sse_monitor.bus.event import Event
from sse_monitor.bus.log import Frame
from sse_monitor.bus.redis_log import RedisLog
from sse_monitor.cluster.lease import Lease
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import eventually

PREFIX = "test-cluster"


class Node:
    """One node's log, and everything its tail delivered."""

    def __init__(self, url: str, name: str, history_size: int = 50) -> None:
        self.redis = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self.tail = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        self.log = RedisLog(
            self.redis, self.tail, prefix=PREFIX, history_size=history_size, node=name
        )
        self.delivered: list[Frame] = []
        self.fenced: list[str] = []
        self.log.follow(self.delivered.append)
        self.log.on_fenced = self.fenced.append
        self.lease = Lease(self.redis, prefix=PREFIX, node=name, ttl=2.0)

    def names(self) -> list[str]:
        return [frame.event.name for frame in self.delivered]

    async def aclose(self) -> None:
        await self.log.aclose()
        await self.redis.aclose()
        await self.tail.aclose()


@pytest.fixture
async def nodes(own_redis: RedisServerProcess) -> AsyncIterator[tuple[Node, Node]]:
    a, b = Node(own_redis.url, "a"), Node(own_redis.url, "b")
    await a.log.open(wait=5)
    await b.log.open(wait=5)
    assert a.log.epoch and a.log.epoch == b.log.epoch
    yield a, b
    await a.aclose()
    await b.aclose()


def session(n: int) -> Event:
    return Event("session_event", {"n": n}, durable=True)


async def test_what_the_producer_appends_reaches_every_node_with_the_same_ids(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    token = await a.lease.acquire()
    assert token is not None
    append = a.log.appender(token)
    for n in range(5):
        append(session(n))
        append(Event("metrics", {"tick": n}))
    await eventually(lambda: len(a.delivered) == 10 and len(b.delivered) == 10, 5, "10 frames")
    assert [f.id for f in a.delivered] == [f.id for f in b.delivered]
    assert [f.event.data for f in b.delivered if f.event.durable] == [{"n": n} for n in range(5)]
    assert [f.seq for f in b.delivered] == sorted(f.seq for f in b.delivered)
    assert [f.event.data for f in await b.log.current()] == [{"tick": 4}]


async def test_an_id_from_one_node_resumes_on_another(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    token = await a.lease.acquire()
    assert token is not None
    append = a.log.appender(token)
    for n in range(6):
        append(session(n))
    await eventually(lambda: len(a.delivered) == 6 and len(b.delivered) == 6, 5, "6 frames")
    seen_on_a = a.delivered[2].id
    replay = await b.log.replay(seen_on_a)
    assert replay.reset is None
    assert [f.event.data["n"] for f in replay.frames] == [3, 4, 5]


async def test_a_stale_token_appends_nothing(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    old = await a.lease.acquire()
    assert old is not None
    await a.lease.release(old)
    new = await b.lease.acquire()
    assert new is not None and new != old
    a.log.appender(old)(session(1))
    b.log.appender(new)(session(2))
    await eventually(lambda: a.fenced == [old], 5, "the old token's append refused")
    await eventually(lambda: len(b.delivered) == 1, 5, "the new producer's event")
    assert [f.event.data for f in b.delivered] == [{"n": 2}]
    assert a.log.appends_refused == 1


async def test_an_id_before_the_log_was_lost_gets_reset(
    nodes: tuple[Node, Node], own_redis: RedisServerProcess
) -> None:
    a, b = nodes
    token = await a.lease.acquire()
    assert token is not None
    a.log.appender(token)(session(1))
    await eventually(lambda: len(b.delivered) == 1, 5, "one frame")
    old_id, old_epoch = b.delivered[0].id, b.log.epoch
    await a.redis.flushall()
    await eventually(lambda: "reset" in b.names(), 10, "a reset for b's clients")
    assert b.log.epoch != old_epoch
    replay = await b.log.replay(old_id)
    assert replay.reset == "unknown_id"
    assert replay.frames[0].event.name == "reset"


async def test_entries_of_a_new_epoch_are_never_passed_off_as_the_old_one(
    nodes: tuple[Node, Node], own_redis: RedisServerProcess
) -> None:
    """Redis flushed, and a new node appends at once: another node reading on must notice
    from the entries themselves, before any quiet second, and reset its clients first."""
    a, b = nodes
    token = await a.lease.acquire()
    assert token is not None
    a.log.appender(token)(session(1))
    await eventually(lambda: len(b.delivered) == 1, 5, "one frame")
    old_epoch = b.log.epoch
    await a.redis.flushall()
    late = Node(own_redis.url, "late")
    await late.log.open(wait=5)
    new_token = await late.lease.acquire()
    assert new_token is not None
    for n in range(2, 7):
        late.log.appender(new_token)(session(n))
    await eventually(
        lambda: (
            [f.event.data for f in b.delivered[-5:]] == [{"n": n} for n in range(2, 7)]
            or len([f for f in b.delivered if f.event.durable]) >= 6
        ),
        10,
        "the new entries on b",
    )
    after_flush = b.delivered[1:]
    assert after_flush[0].event.name == "reset"
    for frame in after_flush:
        if frame.event.durable:
            assert not frame.id.startswith(old_epoch), frame.id
            assert frame.id.startswith(late.log.epoch)
    await late.aclose()


async def test_an_id_ahead_of_this_node_waits_for_its_tail(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    token = await a.lease.acquire()
    assert token is not None
    a.log.appender(token)(session(1))
    await eventually(lambda: len(a.delivered) == 1, 5, "a's frame")
    # b may or may not have read it yet: either way the id is known, not reset.
    replay = await b.log.replay(a.delivered[0].id)
    assert replay.reset is None
    assert replay.frames == []


async def test_a_restarted_redis_without_its_data_resets_and_the_tail_resumes(
    own_redis: RedisServerProcess,
) -> None:
    node = Node(own_redis.url, "solo")
    await node.log.open(wait=5)
    try:
        token = await node.lease.acquire()
        assert token is not None
        node.log.appender(token)(session(1))
        await eventually(lambda: len(node.delivered) == 1, 5, "one frame")
        before = node.log.epoch
        own_redis.stop()
        await eventually(lambda: node.log.available is False, 10, "the log unavailable")
        own_redis.start()
        await eventually(lambda: "reset" in node.names(), 15, "a reset after the restart")
        assert node.log.available and node.log.epoch != before
        told = [f.event.data["log"] for f in node.delivered if f.event.name == "cluster"]
        assert told == ["unavailable", "available"]  # the node's clients were told, once each
        token = await node.lease.acquire()
        assert token is not None
        node.log.appender(token)(session(2))
        await eventually(lambda: node.names()[-1] == "session_event", 5, "appends resume")
        assert node.delivered[-1].event.data == {"n": 2}
    finally:
        await node.aclose()


async def produce_one(node: Node) -> Frame:
    """Take the lease and append one session event: its frame, once the tail delivered it."""
    token = await node.lease.acquire()
    assert token is not None
    node.log.appender(token)(session(1))
    return await eventually(lambda: node.delivered and node.delivered[-1], 5, "the frame")


async def test_a_client_joining_while_redis_is_away_is_told_so_with_its_replay(
    own_redis: RedisServerProcess,
) -> None:
    """The `cluster` news goes only to the clients of that moment: one that connects or
    resumes during the outage gets it after its replay, and none once Redis is back."""
    node = Node(own_redis.url, "joined")
    await node.log.open(wait=5)
    try:
        last_id = (await produce_one(node)).id
        own_redis.stop()
        await eventually(lambda: node.log.available is False, 10, "the log unavailable")
        for after in (None, last_id):
            frames = (await node.log.replay(after)).frames
            assert frames[-1].event.name == "cluster", frames
            assert frames[-1].event.data["log"] == "unavailable"
            assert frames[-1].id == ""  # no id: resuming never skips past it
        own_redis.start()
        await eventually(lambda: node.log.available, 15, "the log available again")
        frames = (await node.log.replay(None)).frames
        assert "cluster" not in [frame.event.name for frame in frames]
    finally:
        await node.aclose()


async def test_history_is_bounded_and_an_id_it_no_longer_covers_is_too_old(
    own_redis: RedisServerProcess,
) -> None:
    node = Node(own_redis.url, "small", history_size=3)
    await node.log.open(wait=5)
    try:
        token = await node.lease.acquire()
        assert token is not None
        for n in range(6):
            node.log.appender(token)(session(n))
        await eventually(lambda: len(node.delivered) == 6, 5, "six frames")
        assert [f.event.data["n"] for f in await node.log.recent(10)] == [3, 4, 5]
        assert (await node.log.replay(node.delivered[0].id)).reset == "too_old"
        assert (await node.log.replay(node.delivered[2].id)).reset is None
        late = Node(own_redis.url, "late", history_size=3)
        await late.log.open(wait=5)
        assert (await late.log.replay(node.delivered[0].id)).reset == "too_old"
        replay = await late.log.replay(node.delivered[3].id)
        assert [f.event.data["n"] for f in replay.frames] == [4, 5]
        await late.aclose()
    finally:
        await node.aclose()


async def test_appends_wait_while_redis_is_down_and_go_out_once_it_returns(
    nodes: tuple[Node, Node], own_redis: RedisServerProcess
) -> None:
    a, b = nodes
    await asyncio.sleep(0)  # nothing pending
    a.log.append(session(7))  # an acknowledgement: no lease guards it
    await eventually(lambda: len(b.delivered) == 1, 5, "the unguarded append")
    assert b.delivered[0].event.data == {"n": 7}
