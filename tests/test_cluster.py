"""Cluster mode end to end: three real gateway processes on one real redis-server, one KATO.

One node polls; a session change reaches the clients of every node once; an id from one node
resumes on another; a producer killed (-9) or paused (SIGSTOP) past its lease is replaced, and
appends nothing after; an ack on one node reaches every client once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from tests.support.alert_rules import status_rule
from tests.support.cluster import Cluster, ClusterNode
from tests.support.sse_client import SSEEvent, SSEStream
from tests.support.waiting import eventually

# Seconds: short, so that a failover test takes seconds, yet long enough that a loaded machine
# (renewals late by a second) does not hand the lease over when nobody failed.
LEASE = 3.0
TICK = 0.2  # the harness's poll interval
CLUSTER_ENV = {"SSE_MONITOR_LEADER_TTL": f"{LEASE}s", "SSE_MONITOR_REDIS_TIMEOUT": "1s"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three nodes, no nginx (the tests talk to each node), a short lease."""
    with Cluster(tmp_path, nodes=3, nginx=False, env=CLUSTER_ENV) as c:
        yield c


async def readyz(node: ClusterNode) -> dict:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"{node.url}/readyz")).json()


async def producer(cluster: Cluster, other_than: ClusterNode | None = None) -> ClusterNode:
    """The node whose /readyz says it produces (waiting for one, paused nodes left out)."""

    async def found() -> ClusterNode | None:
        for node in cluster.nodes:
            if node is other_than or node.paused or not node.running:
                continue
            if (await readyz(node))["role"] == "producer":
                return node
        return None

    return await eventually(found, timeout=30, what="a producer")


def session_events(stream: SSEStream) -> list[SSEEvent]:
    return stream.of("session_event")


def assert_each_change_once(events: list[SSEEvent], final_count: int) -> None:
    """Every change once: ids unique, each event starts where the one before ended, and the
    last ends at `final_count`."""
    ids = [event.id for event in events]
    assert len(ids) == len(set(ids)), f"an event was said twice: {ids}"
    counts = [
        (e.json()["data"]["previous_count"], e.json()["data"]["current_count"]) for e in events
    ]
    for (_, before), (previous, _) in pairwise(counts):
        assert previous == before, f"a gap or a repeat in the counts: {counts}"
    assert counts and counts[-1][1] == final_count, counts


async def count_reaches(stream: SSEStream, count: int, timeout: float = 20) -> None:
    await stream.wait_for_event(
        "session_event", lambda d: d["data"]["current_count"] == count, timeout=timeout
    )


async def test_one_node_polls_and_every_node_serves_each_session_change_once(
    cluster: Cluster,
) -> None:
    lead = await producer(cluster)
    roles = [(await readyz(node))["role"] for node in cluster.nodes]
    assert roles.count("producer") == 1 and roles.count("edge") == 2
    streams = [SSEStream(f"{node.url}/events") for node in cluster.nodes]
    for stream in streams:
        await stream.open()
    try:
        # KATO is asked once per tick for the whole cluster: as many requests as the metrics
        # snapshots appended meanwhile (each node's clients see the same ones).
        await streams[0].wait_for_event("metrics")
        before_requests, before_metrics = cluster.kato_ticks(), len(streams[0].of("metrics"))
        await streams[0].wait_for(
            lambda events: len(streams[0].of("metrics")) >= before_metrics + 15
        )
        requests = cluster.kato_ticks() - before_requests
        metrics = len(streams[0].of("metrics")) - before_metrics
        assert metrics - 2 <= requests <= metrics + 2, (requests, metrics)
        assert lead.count("leader.elected") >= 1

        assert cluster.kato is not None
        await cluster.kato.create_session()
        for stream in streams:
            await count_reaches(stream, 1)
        ids = {tuple(e.id for e in session_events(stream)) for stream in streams}
        assert len(ids) == 1 and len(next(iter(ids))) == 1, ids  # the same one event everywhere
    finally:
        for stream in streams:
            await stream.close()


async def test_an_id_from_one_node_resumes_on_another_with_exactly_what_was_missed(
    cluster: Cluster,
) -> None:
    assert cluster.kato is not None
    first, second, third = cluster.nodes
    async with SSEStream(f"{third.url}/events?topics=sessions") as witness:
        async with SSEStream(f"{first.url}/events?topics=sessions") as reader:
            await cluster.kato.create_session()
            await count_reaches(reader, 1)
            last_seen = session_events(reader)[-1].id
        # Four changes, each seen by the witness before the next (so none merges with another
        # into one net change, or cancels it).
        kept = await cluster.kato.create_session()
        await count_reaches(witness, 2)
        await cluster.kato.create_session()
        await count_reaches(witness, 3)
        await cluster.kato.delete_session(kept)
        await witness.wait_for(
            lambda _: session_events(witness)[-1].json()["data"]["current_count"] == 2
        )
        await cluster.kato.create_session()
        await witness.wait_for(
            lambda _: session_events(witness)[-1].json()["data"]["current_count"] == 3
        )
        seen = [e.id for e in session_events(witness)]
        missed = seen[seen.index(last_seen) + 1 :]
        assert len(missed) == 4, seen

        headers = {"Last-Event-ID": last_seen}
        async with SSEStream(f"{second.url}/events?topics=sessions", headers=headers) as resumed:
            await resumed.wait_for(lambda _: len(session_events(resumed)) >= len(missed))
            assert "reset" not in resumed.names()
            assert [e.id for e in session_events(resumed)] == missed
            assert [e.data for e in session_events(resumed)] == [
                e.data for e in session_events(witness) if e.id in missed
            ]


async def test_a_killed_producer_is_replaced_within_the_lease_and_a_tick_losing_nothing(
    cluster: Cluster,
) -> None:
    assert cluster.kato is not None
    lead = await producer(cluster)
    others = [node for node in cluster.nodes if node is not lead]
    watchers = [SSEStream(f"{node.url}/events?topics=metrics,sessions") for node in others]
    for watcher in watchers:
        await watcher.open()
    try:
        await cluster.kato.create_session()
        for watcher in watchers:
            await count_reaches(watcher, 1)
        since = len(watchers[0].events)
        killed_at = time.monotonic()
        lead.kill()
        # Changes while no node produces: the next producer's first poll announces them.
        gone = await cluster.kato.create_session()
        await cluster.kato.create_session()
        await cluster.kato.delete_session(gone)
        await cluster.kato.create_session()
        await watchers[0].wait_for_event("metrics", since=since, timeout=LEASE + 20)
        took_over = time.monotonic() - killed_at
        successor = await producer(cluster)
        assert successor in others
        for watcher in watchers:
            await count_reaches(watcher, 3)
        for watcher in watchers:
            assert_each_change_once(session_events(watcher), 3)
        assert [e.id for e in session_events(watchers[0])] == [
            e.id for e in session_events(watchers[1])
        ]
        assert successor.count("leader.elected") == 1
        # Within the lease and a tick (and the time a loaded machine takes to start a
        # producer: reading the log, opening KATO's push socket).
        assert took_over < LEASE + TICK + 3.0, took_over
    finally:
        for watcher in watchers:
            await watcher.close()


async def test_a_paused_producer_appends_nothing_once_another_took_over(cluster: Cluster) -> None:
    assert cluster.kato is not None
    lead = await producer(cluster)
    others = [node for node in cluster.nodes if node is not lead]
    watchers = [SSEStream(f"{node.url}/events?topics=sessions") for node in others]
    for watcher in watchers:
        await watcher.open()
    try:
        lead.pause()
        await cluster.kato.create_session()
        successor = await producer(cluster, other_than=lead)
        await cluster.kato.create_session()
        for watcher in watchers:
            await count_reaches(watcher, 2)
        lead.resume()  # it believes it still produces, until the fence says otherwise
        await eventually(lambda: lead.count("leader.deposed") == 1, 20, "the old one deposed")
        await cluster.kato.create_session()
        for watcher in watchers:
            await count_reaches(watcher, 3)
        # The old producer is now an edge, serving the one log: the same events, same ids.
        first = session_events(watchers[0])[0]
        resume = {"Last-Event-ID": first.id}
        async with SSEStream(f"{lead.url}/events?topics=sessions", headers=resume) as on_old:
            await count_reaches(on_old, 3)
            assert [e.id for e in session_events(on_old)] == [
                e.id for e in session_events(watchers[0])[1:]
            ]
        for watcher in watchers:
            assert_each_change_once(session_events(watcher), 3)
        assert (await readyz(lead))["role"] == "edge"
        assert (await readyz(successor))["role"] == "producer"
    finally:
        for watcher in watchers:
            await watcher.close()


@pytest.fixture
def alerting_cluster(tmp_path: Path) -> Iterator[Cluster]:
    rules = tmp_path / "rules.toml"
    rules.write_text(status_rule("kato_degraded", "degraded", "warning", clear_for="1s"))
    env = {**CLUSTER_ENV, "SSE_MONITOR_ALERT_RULES": str(rules)}
    with Cluster(tmp_path, nodes=3, nginx=False, env=env) as cluster:
        yield cluster


async def test_an_ack_on_one_node_reaches_every_client_of_every_node_once(
    alerting_cluster: Cluster,
) -> None:
    cluster = alerting_cluster
    assert cluster.kato is not None
    streams = [SSEStream(f"{node.url}/events?topics=alerts") for node in cluster.nodes]
    for stream in streams:
        await stream.open()
    try:
        await cluster.kato.fault("health", "degraded")
        fired = [
            (await s.wait_for_event("alert", lambda d: d["transition"] == "fired")).json()
            for s in streams
        ]
        assert len({alert["id"] for alert in fired}) == 1
        alert_id = fired[0]["id"]
        async with httpx.AsyncClient(timeout=10) as http:
            url = f"{cluster.nodes[0].url}/api/alerts/{alert_id}/ack"
            answers = [await http.post(url, json={"by": "alice"}) for _ in range(2)]
            other = f"{cluster.nodes[1].url}/api/alerts/{alert_id}/ack"
            answers.append(await http.post(other, json={"by": "bob"}))
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert {a.json()["acknowledged_by"] for a in answers} == {"alice"}  # the first ack wins
        for stream in streams:
            await stream.wait_for_event("alert", lambda d: d["transition"] == "acknowledged")
            # The producer copies the ack into what fires at its next tick.
            await stream.wait_for_event(
                "alerts", lambda d: d["firing_count"] == 1 and d["unacknowledged_count"] == 0
            )
        for stream in streams:
            acks = [e for e in stream.of("alert") if e.json()["transition"] == "acknowledged"]
            assert len(acks) == 1 and acks[0].json()["acknowledged_by"] == "alice"
    finally:
        for stream in streams:
            await stream.close()
