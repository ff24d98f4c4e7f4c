"""A gateway restart as a third-party client lives it: Node's `eventsource` package, which
reconnects by itself with Last-Event-ID. With SSE_MONITOR_DB, a client resuming with an id from
before a clean stop (SIGTERM) is not reset and misses nothing, and a session change made while
the gateway was down is announced once; after kill -9 it is reset, never resumed over a gap."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GatewayProcess
from tests.support.kato import Kato
from tests.support.node_eventsource import NodeEventSource, eventsource_prefix
from tests.support.npm import missing_node

pytestmark = pytest.mark.skipif(missing_node() is not None, reason=str(missing_node()))

SESSIONS = "/events?topics=sessions"  # `reset` and `upstream` come anyway


@pytest.fixture(scope="module")
def eventsource() -> Path:
    return eventsource_prefix()


@pytest.fixture
def running(
    kato: Kato, tmp_path: Path, eventsource: Path
) -> Iterator[tuple[GatewayProcess, NodeEventSource]]:
    """A gateway keeping its log in a file of its own (its clients told to come back soon),
    and the Node client reading its session events."""
    env = {"SSE_MONITOR_DB": str(tmp_path / "gateway.db"), "SSE_MONITOR_RETRY_MS": "300"}
    with (
        GatewayProcess(kato.url, env=env) as gateway,
        NodeEventSource(f"{gateway.url}{SESSIONS}", eventsource) as client,
    ):
        yield gateway, client


async def first_session(kato: Kato, client: NodeEventSource) -> dict[str, Any]:
    """Create a session once the client is connected: the event it receives."""
    await client.wait_for(lambda: client.opens() == 1, "the client connected")
    await kato.create_session()
    await client.wait_for(lambda: changes(client) == [("poll", 0, 1)], "the first session")
    return client.events("session_event")[0]


def changes(client: NodeEventSource, since: int = 0) -> list[tuple[str, int, int]]:
    """The session events received (from line `since` on): source, previous and new count."""
    return [
        (data["source"], data["previous_count"], data["current_count"])
        for data in (line["data"]["data"] for line in client.events("session_event", since))
    ]


def epoch_of(line: dict[str, Any]) -> str:
    return line["id"].rsplit("-", 1)[0]


async def test_after_a_clean_restart_the_client_resumes_and_hears_of_the_change_once(
    kato: Kato, running: tuple[GatewayProcess, NodeEventSource]
) -> None:
    gateway, client = running
    seen = await first_session(kato, client)
    stopped_at = len(client.lines)

    await asyncio.to_thread(gateway.stop)  # SIGTERM
    assert gateway.logged_events("gateway.stopped") == ["gateway.stopped"]
    await kato.create_session()  # while the gateway is down
    await asyncio.to_thread(gateway.start)
    await client.wait_for(lambda: client.opens() == 2, "the client back on its own")
    await kato.create_session()  # a later change: the one before has been sent by then
    await client.wait_for(
        lambda: 3 in [count for *_, count in changes(client, stopped_at)], "the third"
    )

    assert client.events("reset") == []
    assert changes(client, stopped_at) == [("poll", 1, 2), ("poll", 2, 3)]
    resumed = client.events("session_event", stopped_at)
    assert {epoch_of(line) for line in resumed} == {epoch_of(seen)}


async def test_after_kill_9_the_client_is_reset_and_never_resumed_over_a_gap(
    kato: Kato, running: tuple[GatewayProcess, NodeEventSource]
) -> None:
    gateway, client = running
    seen = await first_session(kato, client)

    assert gateway.proc is not None
    gateway.proc.kill()  # what it issued last may never have been written
    await asyncio.to_thread(gateway.proc.wait)
    await asyncio.to_thread(gateway.start)
    [reset] = await client.wait_for(lambda: client.events("reset"), "a reset")
    assert reset["data"]["reason"] == "unknown_id"
    assert reset["data"]["boot"] != epoch_of(seen)

    await kato.create_session()
    await client.wait_for(lambda: changes(client)[-1][2] == 2, "the second session")
    assert epoch_of(client.events("session_event")[-1]) == reset["data"]["boot"]
