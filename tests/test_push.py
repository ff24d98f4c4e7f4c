"""Session events from KATO's push channel (/ws/events), with the poll as the source of truth."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.kato import Kato
from tests.support.sse_client import SSEStream
from tests.support.waiting import eventually


@pytest.fixture
async def live_stream(redis_kato: Kato) -> AsyncIterator[tuple[GatewayProcess, SSEStream]]:
    env = {"SSE_MONITOR_POLL_INTERVAL": "30"}  # a poll far too slow to explain what we see
    with GatewayProcess(redis_kato.url, env=env) as gateway:
        # The socket may open after the first tick, and the next `metrics` (which would say
        # "live") is 30 s away: the gateway's own line says when the push is live.
        await eventually(
            lambda: gateway.logged_events("kato_push.live"), what="the push socket to be live"
        )
        async with SSEStream(f"{gateway.url}/events") as stream:
            yield gateway, stream


async def test_a_pushed_session_reaches_a_client_within_500_ms(
    redis_kato: Kato, live_stream: tuple[GatewayProcess, SSEStream]
) -> None:
    gateway, stream = live_stream
    worker = await redis_kato.push_worker()
    delays = []
    for index in range(5):
        mark = len(stream.events)
        started = time.monotonic()
        session_id = await redis_kato.create_session("push-test", worker)
        event = await stream.wait_for_event("session_event", since=mark, timeout=2)
        delays.append(time.monotonic() - started)
        data = event.json()["data"]
        assert data["source"] == "push"
        assert (data["session_id"], data["node_id"]) == (session_id, "push-test")
        assert data["current_count"] == index + 1 and data["delta"] == 1
    mark = len(stream.events)
    await redis_kato.delete_session(session_id, worker)
    gone = await stream.wait_for_event("session_event", since=mark, timeout=2)
    assert gone.json()["event_type"] == "session_destroyed"
    assert gone.json()["data"]["reason"] == "explicit_delete"
    assert max(delays) < 0.5, delays
    async with httpx.AsyncClient() as client:
        count = (await client.get(f"{gateway.url}/api/sessions/count")).json()
    assert count["active_sessions"] == 4  # updated at once, not at the next poll
    median, worst = statistics.median(delays) * 1000, max(delays) * 1000
    print(f"push to client: median {median:.1f} ms, max {worst:.1f} ms")


async def test_changes_push_does_not_report_are_corrected_by_the_poll(redis_kato: Kato) -> None:
    with GatewayProcess(redis_kato.url, env={"SSE_MONITOR_POLL_INTERVAL": "0.5"}) as gateway:
        async with SSEStream(f"{gateway.url}/events") as stream:
            await stream.wait_for_event(
                "metrics", lambda d: d["sessions"]["push"]["state"] == "live"
            )
            other = 1 - await redis_kato.push_worker()
            # Created through another worker: its push never reaches us.
            await redis_kato.create_session("push-test", other)
            await redis_kato.create_session("push-test", other)
            event = await stream.wait_for_event("session_event", timeout=5)
            data = event.json()["data"]
            assert data["source"] == "poll" and "session_id" not in data
            counts = [e.json()["data"]["current_count"] for e in stream.of("session_event")]
            await stream.wait_for(
                lambda e: stream.of("session_event")[-1].json()["data"]["current_count"] == 2
            )
            assert counts[0] in (1, 2)


async def test_a_change_seen_by_both_channels_is_counted_once(redis_kato: Kato) -> None:
    with GatewayProcess(redis_kato.url, env={"SSE_MONITOR_POLL_INTERVAL": "0.2"}) as gateway:
        async with SSEStream(f"{gateway.url}/events") as stream:
            await stream.wait_for_event(
                "metrics", lambda d: d["sessions"]["push"]["state"] == "live"
            )
            worker = await redis_kato.push_worker()
            # One change at a time: which channel tells first is not promised (a poll may
            # land between a change and its push), and one poll must not see two changes.
            ids = []
            for count in (1, 2, 3):
                ids.append(await redis_kato.create_session("push-test", worker))
                await stream.wait_for(lambda e, n=count: len(stream.of("session_event")) >= n)
            await redis_kato.delete_session(ids[0], worker)
            await stream.wait_for(lambda e: len(stream.of("session_event")) >= 4)
            # Many polls later, each of which also saw these changes: still four events.
            target = len(stream.of("metrics")) + 10
            await stream.wait_for(lambda e: len(stream.of("metrics")) >= target, timeout=15)
            events = [e.json() for e in stream.of("session_event")]
            assert len(events) == 4, events
            assert [e["data"]["current_count"] for e in events] == [1, 2, 3, 2]
            assert stream.of("metrics")[-1].json()["sessions"]["active_count"] == 2


async def test_push_dropped_polling_continues_and_push_comes_back(redis_kato: Kato) -> None:
    with GatewayProcess(redis_kato.url, env={"SSE_MONITOR_POLL_INTERVAL": "0.3"}) as gateway:
        async with SSEStream(f"{gateway.url}/events") as stream:
            await stream.wait_for_event(
                "metrics", lambda d: d["sessions"]["push"]["state"] == "live"
            )
            await redis_kato.push("refuse")
            await redis_kato.push("drop")
            down = await stream.wait_for_event(
                "metrics", lambda d: d["sessions"]["push"]["state"] == "down"
            )
            assert down.json()["sessions"]["push"]["error"]
            mark = len(stream.events)
            await redis_kato.create_session("push-test", 0)
            polled = await stream.wait_for_event("session_event", since=mark, timeout=5)
            assert polled.json()["data"]["source"] == "poll"
            mark = len(stream.events)
            await redis_kato.push("on")
            await stream.wait_for_event(
                "metrics",
                lambda d: d["sessions"]["push"]["state"] == "live",
                timeout=40,
                since=mark,
            )
            worker = await redis_kato.push_worker()
            # The poll made blind (failing /health reads leave the count unknown), so that it
            # cannot tell this change before the push does: the event can only be pushed.
            await redis_kato.fault("health", "http500")
            await stream.wait_for_event("upstream", lambda d: not d["reachable"])
            mark = len(stream.events)
            await redis_kato.create_session("push-test", worker)
            pushed = await stream.wait_for_event("session_event", since=mark, timeout=2)
            assert pushed.json()["data"]["source"] == "push"
            assert pushed.json()["data"]["current_count"] == 2
        assert gateway.log().count('"kato_push.down"') == 1  # one line per change, not per retry


async def test_without_push_polling_alone_works(kato: Kato) -> None:
    """The default simulated KATO keeps sessions in memory: the socket opens, nothing comes."""
    with GatewayProcess(kato.url) as gateway:
        async with SSEStream(f"{gateway.url}/events") as stream:
            await stream.wait_for_event(
                "metrics", lambda d: d["sessions"]["push"]["state"] == "live"
            )
            await kato.create_session()
            event = await stream.wait_for_event("session_event")
            assert event.json()["data"]["source"] == "poll"
    env = {"SSE_MONITOR_KATO_PUSH": "off"}
    with GatewayProcess(kato.url, env=env) as gateway:
        async with SSEStream(f"{gateway.url}/events") as stream:
            metrics = await stream.wait_for_event("metrics")
            assert metrics.json()["sessions"]["push"] == {"state": "off"}


async def test_a_kato_without_the_push_route_is_polled(kato: Kato) -> None:
    await kato.push("refuse")
    with GatewayProcess(kato.url) as gateway:
        async with SSEStream(f"{gateway.url}/events") as stream:
            down = await stream.wait_for_event(
                "metrics", lambda d: d["sessions"]["push"]["state"] == "down"
            )
            assert "403" in down.json()["sessions"]["push"]["error"]
            await kato.create_session()
            await stream.wait_for_event("session_event")
