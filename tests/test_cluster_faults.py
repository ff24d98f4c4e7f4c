"""A cluster under faults: its producer cut from Redis by a network partition, and Redis restarted
with and without its data. Real processes throughout: redis-server, the simulated KATO and three
gateway nodes (tests/support/cluster.py), one of them inside a network namespace
(tests/support/netns.py) for the partition; clients stream from the nodes themselves.

What must hold: nothing crashes, no stream closes, every session change reaches every client
exactly once (a `current_count` chain with no gap and no repeat), and an id either resumes or
gets a `reset`, never a gap presented as complete.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from tests.support.cluster import Cluster, ClusterNode
from tests.support.kato import Kato
from tests.support.netns import Namespace
from tests.support.sse_client import SSEEvent, SSEStream
from tests.support.waiting import eventually

ENV = {"SSE_MONITOR_PING_INTERVAL": "0.5"}  # keep-alives seen within an outage
TAKEOVER = 30  # seconds: a lease (5 s) runs out and another node takes it, on a loaded machine
OUTAGE_CHANGES = ("log.available", "log.unavailable")


# --- helpers -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def streaming(
    nodes: Sequence[ClusterNode], last_id: str | None = None
) -> AsyncIterator[list[SSEStream]]:
    """One /events stream on each node (from `last_id`, if given), closed on leaving."""
    headers = {"Last-Event-ID": last_id} if last_id is not None else None
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(SSEStream(f"{node.url}/events", headers))
            for node in nodes
        ]
        for stream in streams:
            assert stream.response is not None and stream.response.status_code == 200
        yield streams


def session_changes(events: list[SSEEvent]) -> list[tuple[int, int]]:
    """(previous_count, current_count) of each session event, in order."""
    data = [event.json()["data"] for event in events if event.event == "session_event"]
    return [(change["previous_count"], change["current_count"]) for change in data]


def counted(count: int, since: int = 0) -> Callable[[list[SSEEvent]], bool]:
    """A wait_for predicate: a session event from `since` on has brought the count to `count`."""
    return lambda events: any(c == count for _, c in session_changes(events[since:]))


def assert_each_change_once(events: list[SSEEvent], start: int, end: int) -> None:
    """The session events go from `start` to `end`, each one from where the last left off (a
    change missed leaves a gap, one announced twice repeats a step), each id once."""
    changes = session_changes(events)
    chain = [start, *(current for _, current in changes)]
    assert [previous for previous, _ in changes] == chain[:-1], changes
    assert chain[-1] == end, changes
    ids = [event.id for event in events if event.event == "session_event"]
    assert len(set(ids)) == len(ids), ids


async def readyz(node: ClusterNode) -> dict[str, Any]:
    """What the node's /readyz says (200 or 503 alike), read without blocking the streams."""
    return (await asyncio.to_thread(node.readyz)).json()


async def role(node: ClusterNode) -> str:
    return (await readyz(node))["role"]


async def producers(nodes: Sequence[ClusterNode]) -> list[ClusterNode]:
    return [node for node in nodes if await role(node) == "producer"]


def applied_batches(cluster: Cluster, node_name: str) -> bytes | None:
    """The last batch number Redis took from this node's writer (None: none ever)."""
    with redis.Redis.from_url(cluster.redis.url, socket_timeout=5) as client:
        return client.get(f"{cluster.name}:applied:{node_name}")


def started_kato(cluster: Cluster) -> Kato:
    assert cluster.kato is not None
    return cluster.kato


def lines_of(node: ClusterNode, event: str) -> list[dict[str, Any]]:
    return [line for line in node.lines() if line.get("event") == event]


def errors_logged(node: ClusterNode) -> list[dict[str, Any]]:
    return [line for line in node.lines() if line.get("level") in ("error", "critical")]


# --- a producer cut from Redis -------------------------------------------------------------


async def _polled(node: ClusterNode, count: int) -> bool:
    state = await readyz(node)
    assert state["role"] == "producer", "deposed before it polled: too slow a machine?"
    return state["polls"] >= count


async def _unavailable(node: ClusterNode) -> bool:
    return (await readyz(node))["log"]["state"] == "unavailable"


async def _drained(node: ClusterNode) -> bool:
    """Its log is read again and nothing waits to be appended (sent, or refused)."""
    log = (await readyz(node))["log"]
    return log["state"] == "ok" and log["waiting_appends"] == 0


async def test_a_producer_cut_from_redis_is_fenced_and_comes_back_as_an_edge(
    tmp_path: Path,
) -> None:
    with (
        Namespace() as namespace,
        Cluster(tmp_path, env=ENV, nginx=False, namespace=namespace, first_leads=True) as cluster,
    ):
        kato = started_kato(cluster)
        cut, *others = cluster.nodes
        cut_state = await readyz(cut)
        assert cut_state["role"] == "producer"
        assert await producers(others) == []
        async with streaming(cluster.nodes) as streams:
            first = await kato.create_session()
            for stream in streams:
                await stream.wait_for(counted(1))
            last_id = streams[1].of("session_event")[-1].id
            since = [len(stream.events) for stream in streams]

            namespace.cut(cluster.redis.port)
            # The cut producer still believes it leads: it polls, and queues what it sees (each
            # tick starts with its poll of KATO; its ticks slow down to Redis's timeout).
            second = await kato.create_session()
            polls = (await readyz(cut))["polls"]
            await eventually(lambda: _polled(cut, polls + 1), 10, "a tick begun after that")
            await eventually(lambda: _unavailable(cut), 10, "the cut node to lose Redis")
            applied_before = applied_batches(cluster, cut_state["node"])

            (taken_over,) = await eventually(lambda: producers(others), TAKEOVER, "a takeover")
            assert await role(cut) == "edge"  # it stopped once its renewals had failed
            await kato.create_session()
            for stream, start in zip(streams[1:], since[1:], strict=True):
                await stream.wait_for(counted(3, start))
            await kato.delete_session(first)
            for stream, start in zip(streams[1:], since[1:], strict=True):
                await stream.wait_for(counted(2, start))
            # Its clients hear nothing of its own producer: they are fed from Redis alone.
            assert session_changes(streams[0].events[since[0] :]) == []

            namespace.heal(cluster.redis.port)
            await eventually(lambda: _drained(cut), 20, "the healed node's outbox refused")
            assert await role(cut) == "edge"
            assert await producers(others) == [taken_over]
            # A change made now comes after anything the old producer could still append.
            await kato.delete_session(second)
            for stream, start in zip(streams, since, strict=True):
                await stream.wait_for(counted(1, start))

            for stream in streams:
                assert not stream.ended.is_set()
                assert_each_change_once(stream.events, 0, kato.state.active_count())
            # The healed node's client was told the same events, with the same ids.
            told = [(e.id, e.data) for e in streams[1].of("session_event")]
            assert [(e.id, e.data) for e in streams[0].of("session_event")] == told
            async with streaming([cut], last_id) as (resumed,):
                await resumed.wait_for(counted(1))
                assert "reset" not in resumed.names()
                assert [(e.id, e.data) for e in resumed.of("session_event")] == told[1:]

        token = lines_of(cut, "leader.elected")[0]["token"]
        assert [line["token"] for line in lines_of(cut, "leader.deposed")] == [token]
        refused = lines_of(cut, "log.append_fenced")
        assert [line["token"] for line in refused] == [token], refused
        assert refused[0]["dropped"] > 0
        assert applied_batches(cluster, cut_state["node"]) == applied_before
        for node in cluster.nodes:
            assert errors_logged(node) == [], node.log_tail()


# --- Redis restarted -----------------------------------------------------------------------


async def redis_down(cluster: Cluster, streams: Sequence[SSEStream]) -> list[int]:
    """Stop Redis, and wait until every node says so and none produces any more (its lease
    lapsed) while every stream stays open with keep-alives. Each node's count of log-state lines
    before the outage."""
    before = [len(node.logged_events(*OUTAGE_CHANGES)) for node in cluster.nodes]
    pings = [len(stream.parser.comments) for stream in streams]
    await asyncio.to_thread(cluster.redis.stop)
    await eventually(lambda: _log_states(cluster, 503, "unavailable"), 15, "readyz: unavailable")
    await eventually(lambda: _all_edges(cluster.nodes), TAKEOVER, "every producer to stop")
    for stream, count in zip(streams, pings, strict=True):
        await stream.wait_for_event("cluster", lambda data: data["log"] == "unavailable")
        await stream.wait_for(pinged(stream, count + 2))
    for node, count in zip(cluster.nodes, before, strict=True):
        assert node.logged_events(*OUTAGE_CHANGES)[count:] == ["log.unavailable"]
    return before


async def redis_back(cluster: Cluster, streams: Sequence[SSEStream], before: list[int]) -> None:
    """Start Redis again (on its port), and wait until every node and stream says so."""
    since = [len(stream.events) for stream in streams]
    await asyncio.to_thread(cluster.redis.start)
    await eventually(lambda: _log_states(cluster, 200, "ok"), TAKEOVER, "readyz: ready again")
    for stream, start in zip(streams, since, strict=True):
        await stream.wait_for_event("cluster", lambda data: data["log"] == "available", since=start)
    for node, count in zip(cluster.nodes, before, strict=True):
        changes = node.logged_events(*OUTAGE_CHANGES)[count : count + 2]
        assert changes == ["log.unavailable", "log.available"]


async def outage_with_a_session_made(
    cluster: Cluster, streams: Sequence[SSEStream]
) -> tuple[str, list[int]]:
    """A first session, announced to every stream; then Redis down until nobody produces, a
    second session made meanwhile, and Redis back. The first session's event id, and how many
    events each stream had before Redis came back."""
    kato = started_kato(cluster)
    await kato.create_session()
    for stream in streams:
        await stream.wait_for(counted(1))
    event_id = streams[0].of("session_event")[-1].id
    assert event_id is not None
    before = await redis_down(cluster, streams)
    await kato.create_session()
    since = [len(stream.events) for stream in streams]
    await redis_back(cluster, streams, before)
    return event_id, since


async def _log_states(cluster: Cluster, status: int, state: str) -> bool:
    """Whether every node's /readyz answers `status` with its log in `state`."""
    answers = [await asyncio.to_thread(node.readyz) for node in cluster.nodes]
    return all(a.status_code == status and a.json()["log"]["state"] == state for a in answers)


def pinged(stream: SSEStream, count: int) -> Callable[[list[SSEEvent]], bool]:
    """A wait_for predicate: the stream has had `count` comments (keep-alives) in all."""
    return lambda _: len(stream.parser.comments) >= count


async def _all_edges(nodes: Sequence[ClusterNode]) -> bool:
    return await producers(nodes) == []


async def test_redis_restarted_without_its_data_resets_every_client_and_goes_on(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path, env=ENV, nginx=False) as cluster:
        kato = started_kato(cluster)
        async with streaming(cluster.nodes) as streams:
            old_id, since = await outage_with_a_session_made(cluster, streams)
            old_epoch = old_id.split("-")[0]

            for stream, start in zip(streams, since, strict=True):
                reset = await stream.wait_for_event("reset", since=start, timeout=TAKEOVER)
                assert reset.json()["boot"] != old_epoch
                # The state after it is the truth: the new producer's first poll counted two.
                await stream.wait_for_event(
                    "metrics", lambda data: data["sessions"]["active_count"] == 2, TAKEOVER, start
                )
            await kato.create_session()
            for stream, start in zip(streams, since, strict=True):
                await stream.wait_for(counted(3, start))
                assert session_changes(stream.events[start:]) == [(2, 3)]
                new_id = stream.of("session_event")[-1].id
                assert new_id is not None and not new_id.startswith(old_epoch)
                assert not stream.ended.is_set()

            async with streaming([cluster.nodes[1]], old_id) as (resumed,):
                await resumed.wait_for_event("reset")
                assert resumed.events[0].event == "reset"

        for node in cluster.nodes:
            assert errors_logged(node) == [], node.log_tail()


async def test_redis_restarted_with_its_data_resumes_every_id_and_announces_the_gap_once(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path, env=ENV, nginx=False, persistent_redis=True) as cluster:
        kato = started_kato(cluster)
        async with streaming(cluster.nodes) as streams:
            old_id, since = await outage_with_a_session_made(cluster, streams)
            epoch = old_id.split("-")[0]

            for stream, start in zip(streams, since, strict=True):
                await stream.wait_for(counted(2, start), TAKEOVER)
            await kato.create_session()
            for stream, start in zip(streams, since, strict=True):
                await stream.wait_for(counted(3, start))
                assert "reset" not in stream.names()
                assert not stream.ended.is_set()
                assert_each_change_once(stream.events, 0, 3)
                assert all(e.id is not None and e.id.startswith(f"{epoch}-") for e in stream.events)
                # The session created while Redis was down: announced once, by the first poll.
                reconciled = next(e for e in stream.events[start:] if e.event == "session_event")
                assert reconciled.json()["data"]["source"] == "poll"

            told = [(e.id, e.data) for e in streams[0].of("session_event")]
            async with streaming([cluster.nodes[1]], old_id) as (resumed,):
                await resumed.wait_for(counted(3))
                assert "reset" not in resumed.names()
                assert [(e.id, e.data) for e in resumed.of("session_event")] == told[1:]

        for node in cluster.nodes:
            assert errors_logged(node) == [], node.log_tail()
