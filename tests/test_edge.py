"""The edge alone, in this process: the stream, the stream registry and the JSON API, served by a
real uvicorn on loopback over a log the test appends to (no producer, no KATO).

This is the seam of the event log seen from the serving side: everything the edge answers comes
from the log's current state, replay and history, whoever appends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn

from sse_monitor.app import create_app
from sse_monitor.bus.event import Event
from sse_monitor.bus.log import Frame, Replay
from sse_monitor.bus.memory import MemoryLog
from sse_monitor.clock import iso, utc_now
from sse_monitor.settings import Settings
from tests.support.http import tls
from tests.support.sse_client import SSEStream
from tests.support.waiting import eventually


class AwaitingLog(MemoryLog):
    """A memory log whose replays wait until let go, as a remote log's reads do."""

    def __init__(self, *, history_size: int) -> None:
        super().__init__(history_size=history_size)
        self.replaying = asyncio.Event()
        self.let_go = asyncio.Event()
        self.let_go.set()

    async def replay(self, after: str | None) -> Replay:
        self.replaying.set()
        await self.let_go.wait()
        return await super().replay(after)


@dataclass
class Edge:
    url: str
    log: AwaitingLog

    def append(self, event: Event) -> Frame:
        self.log.append(event)
        assert self.log.head is not None
        return self.log.head

    def stream(self, query: str = "", last_event_id: str | None = None) -> SSEStream:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else None
        return SSEStream(f"{self.url}/events{query}", headers=headers)


async def serve(settings: Settings) -> AsyncIterator[Edge]:
    log = AwaitingLog(history_size=settings.history_size)
    app = create_app(settings, event_log=log, produce=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), timeout=10, what="uvicorn started")
    if task.done():
        task.result()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Edge(f"http://127.0.0.1:{port}", log)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


def edge_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        db_path=str(tmp_path / "edge.db"),
        container_stats=False,
        kato_push=False,
        poll_interval=0.5,
        history_size=50,
        **overrides,
    )


@pytest_asyncio.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async for running in serve(edge_settings(tmp_path)):
        yield running


def metrics(count: int, *, stale: bool = False) -> Event:
    return Event(
        "metrics",
        {
            "timestamp": iso(utc_now()),
            "kato": {"status": "healthy"},
            "sessions": {"active_count": count, "push": {"state": "off"}},
            "stale": stale,
            "error": None,
            "last_success": None,
        },
    )


def session_event(previous: int, current: int) -> Event:
    created = current > previous
    return Event(
        "session_event",
        {
            "type": "session_event",
            "event_type": "session_created" if created else "session_destroyed",
            "timestamp": iso(utc_now()),
            "data": {"current_count": current, "previous_count": previous, "delta": 1},
        },
        durable=True,
    )


def counts(stream: SSEStream) -> Callable[[Any], list[int]]:
    return lambda _: [e.json()["data"]["current_count"] for e in stream.of("session_event")]


# The stream


async def test_a_new_client_gets_the_current_state_then_what_is_appended(edge: Edge) -> None:
    edge.append(session_event(0, 1))  # before the client: not replayed without an id
    edge.append(metrics(1))
    async with edge.stream() as stream:
        first = await stream.wait_for_event("metrics")
        assert first.json()["sessions"]["active_count"] == 1
        assert stream.parser.retry == 3000
        edge.append(session_event(1, 2))
        await stream.wait_for_event("session_event")
        assert stream.names() == ["metrics", "session_event"]


async def test_a_client_resuming_gets_exactly_what_it_missed(edge: Edge) -> None:
    seen = edge.append(session_event(0, 1))
    edge.append(session_event(1, 2))
    edge.append(metrics(2))
    edge.append(session_event(2, 3))
    async with edge.stream(last_event_id=seen.id) as stream:
        await stream.wait_for(lambda events: len(events) >= 3)
        assert stream.names() == ["session_event", "metrics", "session_event"]
        assert counts(stream)(None) == [2, 3]
        assert [e.id for e in stream.events] == [
            f"{edge.log.epoch}-{n}" for n in (seen.seq + 1, seen.seq + 2, seen.seq + 3)
        ]


async def test_an_id_the_log_cannot_honour_gets_a_reset_and_the_state(edge: Edge) -> None:
    edge.append(metrics(4))
    async with edge.stream(last_event_id="0123abcd-7") as stream:
        await stream.wait_for(lambda events: len(events) >= 2)
        assert stream.names() == ["reset", "metrics"]
        assert stream.events[0].json()["reason"] == "unknown_id"


async def test_frames_appended_while_the_replay_awaits_are_sent_once_in_order(
    edge: Edge,
) -> None:
    seen = edge.append(session_event(0, 1))
    edge.append(session_event(1, 2))
    edge.log.let_go.clear()
    edge.log.replaying.clear()
    stream = edge.stream(last_event_id=seen.id)
    await stream.open()
    try:
        await asyncio.wait_for(edge.log.replaying.wait(), timeout=5)
        edge.append(session_event(2, 3))  # reaches the held subscription through the tail
        edge.append(metrics(3))
        edge.log.let_go.set()  # the replay, read now, holds them too
        edge.append(session_event(3, 4))
        await stream.wait_for(lambda _: counts(stream)(None)[-1:] == [4])
        assert counts(stream)(None) == [2, 3, 4]
        assert stream.names() == ["session_event", "session_event", "metrics", "session_event"]
        ids = [int(e.id.rsplit("-", 1)[1]) for e in stream.events if e.id]
        assert ids == sorted(set(ids))
    finally:
        await stream.close()


async def test_topics_choose_what_a_stream_is_sent(edge: Edge) -> None:
    edge.append(metrics(0))
    async with edge.stream("?topics=sessions") as stream:
        edge.append(metrics(1))
        edge.append(Event("upstream", {"reachable": False}, durable=True))  # no topic: for all
        edge.append(session_event(0, 1))
        await stream.wait_for_event("session_event")
        assert stream.names() == ["upstream", "session_event"]


# The stream registry


async def test_the_registry_limits_streams_and_frees_a_place_when_one_ends(
    tmp_path: Path,
) -> None:
    settings = edge_settings(tmp_path, max_streams=3, max_streams_per_client=2)
    async for edge in serve(settings):
        edge.append(metrics(0))
        async with httpx.AsyncClient(base_url=edge.url, verify=tls()) as client:
            first, second = edge.stream(), edge.stream()
            await first.open()
            await second.open()
            refused = await client.get("/events")
            assert refused.status_code == 429
            assert refused.json()["retry_after_seconds"] == settings.retry_after
            streams = (await client.get("/api/streams")).json()
            assert streams["open"] == 2 and streams["by_client"] == {"127.0.0.1": 2}
            everything = ["metrics", "containers", "sessions", "alerts"]
            assert [s["topics"] for s in streams["streams"]] == [everything, everything]
            await first.close()

            async def one_open() -> bool:
                return (await client.get("/api/streams")).json()["open"] == 1

            await eventually(one_open, what="the closed stream released")
            third = edge.stream()
            await third.open()
            await third.wait_for_event("metrics")
            await second.close()
            await third.close()


async def test_a_full_gateway_answers_503(tmp_path: Path) -> None:
    async for edge in serve(edge_settings(tmp_path, max_streams=1)):
        async with (
            edge.stream() as held,
            httpx.AsyncClient(base_url=edge.url, verify=tls()) as client,
        ):
            assert held.response is not None and held.response.status_code == 200
            refused = await client.get("/events")
            assert refused.status_code == 503
            assert "as many streams" in refused.json()["error"]


# The JSON API


async def test_snapshot_and_readiness_follow_the_logs_state(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url, verify=tls()) as client:
        assert (await client.get("/api/snapshot")).status_code == 503
        unready = await client.get("/readyz")
        assert unready.status_code == 503 and unready.json()["polls"] is None
        edge.append(metrics(5))
        snapshot = (await client.get("/api/snapshot")).json()
        assert snapshot["sessions"]["active_count"] == 5
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["kato_status"] == "healthy"
        assert ready.json()["last_poll"] == snapshot["timestamp"]


async def test_the_session_count_is_the_newest_of_snapshot_and_session_event(
    edge: Edge,
) -> None:
    async with httpx.AsyncClient(base_url=edge.url, verify=tls()) as client:
        assert (await client.get("/api/sessions/count")).json()["active_sessions"] is None
        edge.append(metrics(2))
        assert (await client.get("/api/sessions/count")).json()["active_sessions"] == 2
        edge.append(session_event(2, 3))  # a push between ticks
        body = (await client.get("/api/sessions/count")).json()
        assert body["active_sessions"] == 3 and body["stale"] is False
        edge.append(metrics(1, stale=True))  # a newer snapshot wins
        body = (await client.get("/api/sessions/count")).json()
        assert body["active_sessions"] == 1 and body["stale"] is True


async def test_events_pages_forward_through_the_history(edge: Edge) -> None:
    frames = [edge.append(session_event(n, n + 1)) for n in range(5)]
    edge.append(metrics(5))
    async with httpx.AsyncClient(base_url=edge.url, verify=tls()) as client:
        newest = (await client.get("/api/events", params={"limit": 2})).json()
        assert [e["id"] for e in newest["events"]] == [f.id for f in frames[-2:]]
        assert newest["more"] is True and newest["boot"] == edge.log.epoch
        page = (await client.get("/api/events", params={"after": frames[0].id, "limit": 3})).json()
        assert [e["id"] for e in page["events"]] == [f.id for f in frames[1:4]]
        assert page["more"] is True and page["reset"] is None
        lost = (await client.get("/api/events", params={"after": "0123abcd-1"})).json()
        assert lost["reset"] == "unknown_id" and len(lost["events"]) == 5


async def test_containers_are_off_and_an_edge_alone_has_no_alert_desk(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url, verify=tls()) as client:
        containers = (await client.get("/api/containers")).json()
        assert containers["enabled"] is False
        assert (await client.get("/api/alerts")).status_code == 404


@pytest.mark.parametrize(
    "path", ["/api/events?after=%0a", "/api/events?limit=0", "/events?topics=x"]
)
async def test_bad_input_to_the_edge_is_a_400(edge: Edge, path: str) -> None:
    async with httpx.AsyncClient(base_url=edge.url, verify=tls()) as client:
        response = await client.get(path)
        assert response.status_code == 400
        assert "error" in response.json()
