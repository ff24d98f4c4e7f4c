"""Notifications in cluster mode, end to end: two real gateway nodes on one real redis-server,
one simulated KATO, and a real HTTP receiver on loopback. The outbox is the cluster's, in
Redis: a producer killed with -9 while the receiver is down loses nothing, and its successor
neither loses nor repeats a transition."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.alert_rules import status_rule
from tests.support.cluster import Cluster, ClusterNode
from tests.support.notify_receiver import Answer, RecordingReceiver
from tests.support.servers import ThreadedServer
from tests.support.waiting import eventually

LEASE = 3.0  # seconds (as test_cluster.py's, for the same reasons)
RULES = status_rule(
    "kato_degraded", "degraded", "warning", clear_for="2s", message="KATO is degraded"
)


@pytest.fixture
def receiver() -> Iterator[tuple[RecordingReceiver, int]]:
    """A receiver and the port it will listen on, down for now (the test brings it up)."""
    recording = RecordingReceiver()
    server = ThreadedServer(recording.app).start()
    port = server.port
    server.stop()
    yield recording, port


async def deliveries(node: ClusterNode) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"{node.url}/api/notifications")
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["notifications"]))  # oldest first


async def recorded(node: ClusterNode, count: int, what: str) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        found = await deliveries(node)
        return found if len(found) == count else None

    return await eventually(enough, 30, what)


def cluster_notifying(tmp_path: Path, port: int) -> Cluster:
    """Two nodes, node 0 producing, notifying a webhook receiver "ops" on `port`."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        RULES + f'[[receiver]]\nname = "ops"\nkind = "webhook"\n'
        f'url = "http://127.0.0.1:{port}/hook"\n[[route]]\nreceiver = "ops"\ngroup_wait = "0s"\n'
    )
    env = {
        "SSE_MONITOR_LEADER_TTL": f"{LEASE}s",
        "SSE_MONITOR_REDIS_TIMEOUT": "1s",
        "SSE_MONITOR_ALERT_RULES": str(rules),
    }
    return Cluster(tmp_path, nodes=2, nginx=False, env=env, first_leads=True)


async def attempted_while_down(node: ClusterNode) -> None:
    """Once the one message in the outbox was tried at its receiver, which is down."""

    async def tried() -> bool:
        [entry] = await deliveries(node)
        return entry["attempts"] >= 1 and entry["state"] == "pending"

    await eventually(tried, 20, "an attempt at the receiver while it is down")


async def test_a_producer_killed_while_the_receiver_is_down_loses_and_repeats_nothing(
    tmp_path: Path, receiver: tuple[RecordingReceiver, int]
) -> None:
    recording, port = receiver
    with cluster_notifying(tmp_path, port) as cluster:
        assert cluster.kato is not None
        producer, survivor = cluster.nodes
        await cluster.kato.fault("health", "degraded")
        [fired] = await recorded(survivor, 1, "the firing in the cluster's outbox")
        alert_id = fired["alerts"][0]["id"]
        await attempted_while_down(survivor)
        async with httpx.AsyncClient(timeout=5) as http:  # acked on the other node
            acked = await http.post(
                f"{survivor.url}/api/alerts/{alert_id}/ack", json={"by": "alice"}
            )
        assert acked.status_code == 200, acked.text
        await recorded(survivor, 2, "the ack, taken by the producer from Redis")

        producer.kill()
        await eventually(lambda: survivor.role() == "producer", LEASE + 30, "node 1 producing")
        await cluster.kato.fault("health", "ok")
        await recorded(survivor, 3, "the resolve, by the new producer")
        with ThreadedServer(recording.app, port=port):

            async def delivered() -> list[dict[str, Any]] | None:
                found = await deliveries(survivor)
                return found if all(d["state"] == "delivered" for d in found) else None

            found = await eventually(delivered, 60, "all three delivered")
    assert [d["alerts"] for d in found] == [
        [{"id": alert_id, "transition": kind}] for kind in ("fired", "acknowledged", "resolved")
    ]
    bodies = [json.loads(r.body) for r in recording.received if r.status == 200]
    assert [[t["transition"] for t in b["transitions"]] for b in bodies] == [
        ["fired"],
        ["acknowledged"],
        ["resolved"],
    ]
    assert recording.count() == 3  # a receiver's messages go in order: nothing repeats later
    assert len(set(recording.keys())) == 3


async def test_a_paused_producer_resuming_sends_nothing_its_successor_is_sending(
    tmp_path: Path, receiver: tuple[RecordingReceiver, int]
) -> None:
    """SIGSTOP while a message waits for its receiver; the next producer sends it, slowly, and
    the paused one resumes meanwhile: it no longer holds the lease, so it must not read the
    message as its own to send (only a request it had begun before the pause may repeat)."""
    recording, port = receiver
    with cluster_notifying(tmp_path, port) as cluster:
        assert cluster.kato is not None
        paused, successor = cluster.nodes
        await cluster.kato.fault("health", "degraded")
        await recorded(successor, 1, "the firing in the cluster's outbox")
        await attempted_while_down(successor)
        paused.pause()
        await eventually(lambda: successor.role() == "producer", LEASE + 30, "node 1 producing")
        recording.answer(Answer(200, delay=4.0))  # the successor's request takes a while
        with ThreadedServer(recording.app, port=port):
            await eventually(lambda: recording.count() == 1, 60, "the successor's request")
            paused.resume()

            async def delivered() -> bool:
                [entry] = await deliveries(successor)
                return entry["state"] == "delivered"

            await eventually(delivered, 30, "the message delivered")
            await eventually(lambda: paused.role() == "edge", 30, "node 0 no longer producing")
    assert recording.count() == 1, recording.keys()
