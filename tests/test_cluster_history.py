"""The charts' history in cluster mode, end to end: two real gateway nodes on one real
redis-server and one simulated KATO. What the producer records, the other node answers at
/api/history; after a kill -9 of the producer, the survivor takes over, still answers what was
recorded before, and records on, with a gap no longer than the takeover."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import Cluster, ClusterNode
from tests.support.history_answers import (
    SERIES,
    assert_recorded_as_published,
    history,
    once_recorded,
)
from tests.support.sse_client import SSEStream
from tests.support.waiting import eventually

LEASE = 3.0  # seconds (as test_cluster.py's, for the same reasons)
CLUSTER_ENV = {"SSE_MONITOR_LEADER_TTL": f"{LEASE}s", "SSE_MONITOR_REDIS_TIMEOUT": "1s"}
CPU = "kato.cpu_percent"
SLACK = 3.0  # seconds a loaded machine may add to a tick or to starting a producer


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two nodes, node 0 the producer, no nginx (the tests talk to each node)."""
    with Cluster(tmp_path, nodes=2, nginx=False, env=CLUSTER_ENV, first_leads=True) as c:
        yield c


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def points(answer: dict[str, Any]) -> list[tuple[float, float | None]]:
    """CPU's points as (seconds, value or None for a gap)."""
    return [(seconds(at), value) for at, value in answer["series"][CPU]]


async def readyz(node: ClusterNode) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"{node.url}/readyz")).json()


async def test_the_other_node_answers_the_history_and_a_failover_keeps_it(
    cluster: Cluster,
) -> None:
    assert cluster.kato is not None
    producer, survivor = cluster.nodes
    async with SSEStream(f"{survivor.url}/events?topics=metrics,sessions") as stream:
        await cluster.kato.create_session()
        created = (await stream.wait_for_event("session_event")).json()
        await stream.wait_for(lambda _: len(stream.of("metrics")) >= 10)
    published = [event.json() for event in stream.of("metrics")]
    since = published[0]["timestamp"]
    # Recorded by node 0's producer, answered by node 1 from Redis.
    before = await once_recorded(survivor.url, published)
    assert_recorded_as_published(before, published, created)

    killed_at = time.time()
    producer.kill()

    async def took_over() -> float | None:
        started = (await readyz(survivor))["producing_since"]  # once its producer started
        return seconds(started) if started is not None else None

    elected_at = await eventually(took_over, LEASE + 30, "node 1 producing")

    async def recorded_after() -> dict[str, Any] | None:
        answer = await history(survivor.url, series=SERIES, since=since, step=0)
        after = [t for t, value in points(answer) if value is not None and t > elected_at]
        return answer if len(after) >= 5 else None

    answer = await eventually(recorded_after, 20, "ticks of node 1's term in its answer")
    assert_recorded_as_published(answer, published, created)  # all kept across the failover
    assert answer["markers"] == before["markers"]
    # Across the takeover: node 0's last tick, a gap (null), node 1's first figures.
    kept = points(answer)
    old = [t for t, value in kept if value is not None and t <= killed_at]
    new = [t for t, value in kept if value is not None and t > killed_at]
    assert old[-1] > killed_at - 1 - SLACK, "node 0's last ticks are missing"
    assert new[0] < elected_at + SLACK, "node 1's first ticks are missing"
    # (A first tick whose KATO read ran out of time on a loaded machine is a gap too.)
    between = [value for t, value in kept if old[-1] < t < new[0]]
    assert between and all(value is None for value in between), between
    assert new[0] - old[-1] < (elected_at - killed_at) + 1 + SLACK
    assert not [line for line in survivor.lines() if line.get("level") in ("error", "critical")]
