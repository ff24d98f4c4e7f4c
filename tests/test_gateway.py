"""The gateway end to end: a real uvicorn process polling the simulated KATO over HTTP."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import Kato
from tests.support.sse_client import SSEEvent, SSEStream
from tests.support.waiting import eventually

POLL = 0.2  # the gateway's poll interval in these tests (see GatewayProcess)


def durable_ids(events: list[SSEEvent]) -> list[str]:
    return [e.id for e in events if e.event in ("session_event", "upstream") and e.id]


async def test_first_frame_has_retry_and_the_current_snapshot(
    module_gateway: GatewayProcess,
) -> None:
    async with SSEStream(f"{module_gateway.url}/events") as stream:
        first = await stream.wait_for_event("metrics", timeout=5)
        assert stream.parser.retry == 3000
        assert stream.response is not None
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] in ("no-store", "no-cache")
        assert headers["x-accel-buffering"] == "no"
        data = first.json()
        assert data["kato"]["status"] == "healthy"
        assert data["timestamp"].endswith("+00:00")
        assert first.id and first.id.count("-") == 1


async def test_sessions_created_and_deleted_reach_the_stream(
    kato: Kato, gateway: GatewayProcess
) -> None:
    async with SSEStream(f"{gateway.url}/events") as stream:
        await stream.wait_for_event("metrics", lambda d: d["sessions"]["active_count"] == 0)
        first = await kato.create_session()
        created = await stream.wait_for_event("session_event", timeout=POLL * 10)
        assert created.json()["event_type"] == "session_created"
        assert created.json()["data"]["current_count"] == 1
        assert created.json()["data"]["previous_count"] == 0
        assert created.json()["data"]["delta"] == 1
        assert created.json()["data"]["time_since_last_event"] is None

        await kato.delete_session(first)
        destroyed = await stream.wait_for_event(
            "session_event", lambda d: d["event_type"] == "session_destroyed"
        )
        body = destroyed.json()
        assert body["type"] == "session_event"
        assert body["data"]["current_count"] == 0
        assert body["data"]["previous_count"] == 1
        assert body["data"]["time_since_last_event"] > 0
        assert body["timestamp"].endswith("+00:00")


async def test_resume_with_last_event_id_loses_and_duplicates_nothing(
    kato: Kato, gateway: GatewayProcess
) -> None:
    async with SSEStream(f"{gateway.url}/events") as watcher:
        await watcher.wait_for_event("metrics")
        away = SSEStream(f"{gateway.url}/events")
        await away.open()
        await kato.create_session()
        await away.wait_for(lambda events: durable_ids(events))
        await away.close()
        last_seen = away.parser.last_event_id

        # While it is away: several changes, each seen by a separate tick.
        for n in range(3):
            await kato.create_session()
            await watcher.wait_for(lambda events, n=n: len(watcher.of("session_event")) >= n + 2)

        async with SSEStream(
            f"{gateway.url}/events", headers={"Last-Event-ID": last_seen or ""}
        ) as back:
            await back.wait_for(lambda events: len(back.of("session_event")) >= 3)
            await kato.create_session()
            await watcher.wait_for(lambda events: len(watcher.of("session_event")) >= 5)
            await back.wait_for(lambda events: len(back.of("session_event")) >= 4)
            assert "reset" not in back.names()

        got = [e.id for e in away.of("session_event") + back.of("session_event")]
        assert len(got) == len(set(got)), "an event was delivered twice"
        assert got == [e.id for e in watcher.of("session_event")], "an event was lost"


async def test_last_event_id_query_parameter_resumes_after_a_reload(
    kato: Kato, gateway: GatewayProcess
) -> None:
    async with SSEStream(f"{gateway.url}/events") as first:
        await first.wait_for_event("metrics")
        last = first.parser.last_event_id
    await kato.create_session()
    async with SSEStream(f"{gateway.url}/events") as watcher:
        await watcher.wait_for_event("metrics", lambda d: d["sessions"]["active_count"] == 1)
    async with SSEStream(f"{gateway.url}/events?last_event_id={last}") as reloaded:
        event = await reloaded.wait_for_event("session_event")
        assert event.json()["data"]["current_count"] == 1


async def test_an_id_from_another_process_gets_reset_and_snapshot(
    module_gateway: GatewayProcess,
) -> None:
    async with SSEStream(
        f"{module_gateway.url}/events", headers={"Last-Event-ID": "0123abcd-42"}
    ) as stream:
        await stream.wait_for_event("metrics")
        assert stream.names()[0] == "reset"
        assert "metrics" in stream.names()[1:3]
        assert stream.of("reset")[0].json()["reason"] == "unknown_id"


async def test_kato_down_then_back(kato: Kato, gateway: GatewayProcess) -> None:
    async with SSEStream(f"{gateway.url}/events") as stream:
        await stream.wait_for_event("metrics", lambda d: d["kato"]["status"] == "healthy")
        await kato.create_session()
        await stream.wait_for_event("session_event")

        # A loaded machine can make a 0.16 s read time out (a true change of its own) before
        # the outage: count the outage's events and lines from here on.
        before = len(gateway.logged_events("kato.reachable", "kato.unreachable"))
        mark = len(stream.events)
        await kato.stop()
        down = await stream.wait_for_event("upstream", lambda d: not d["reachable"], since=mark)
        assert down.json()["error"]
        stale = await stream.wait_for_event(
            "metrics", lambda d: d["kato"]["status"] == "unreachable", since=mark
        )
        assert stale.json()["stale"] is True
        assert stale.json()["sessions"]["active_count"] == 1  # last known, never 0
        # several failed ticks, one upstream event, no session event
        await stream.wait_for(
            lambda events: (
                sum(
                    1
                    for e in events[mark:]
                    if e.event == "metrics" and e.json()["kato"]["status"] == "unreachable"
                )
                >= 5
            )
        )
        assert [e.event for e in stream.events[mark:]].count("upstream") == 1
        assert len(stream.of("session_event")) == 1

        kato.state.create_session("during-outage")
        await kato.restart()
        back = await stream.wait_for_event("upstream", lambda d: d["reachable"], since=mark)
        assert back.json()["previous_state_seconds"] > 0
        change = await stream.wait_for(lambda events: len(stream.of("session_event")) == 2)
        assert change
        recovered = stream.of("session_event")[1].json()
        assert recovered["data"]["previous_count"] == 1
        assert recovered["data"]["current_count"] == 2
        assert not stream.ended.is_set()

    # One line per change: at start, the outage, the recovery.
    changes = gateway.outage_changes("kato.reachable", "kato.unreachable", before)
    assert changes == ["kato.reachable", "kato.unreachable", "kato.reachable"]


@pytest.mark.parametrize("mode", ["garbage", "http500", "error", "slow"])
async def test_a_failing_health_answer_is_a_failed_poll(
    kato: Kato, gateway: GatewayProcess, mode: str
) -> None:
    async with SSEStream(f"{gateway.url}/events") as stream:
        await stream.wait_for_event("metrics", lambda d: d["kato"]["status"] == "healthy")
        mark = len(stream.events)
        await kato.fault("health", mode, delay=5)
        kato.state.create_session("hidden")
        # KATO's health check failed ("error"): "unhealthy" is real, its session count (0) is
        # not. The status is waited for: on a loaded machine a read can also time out, a true
        # "unreachable" tick of its own.
        status = "unhealthy" if mode == "error" else "unreachable"
        event = await stream.wait_for_event(
            "metrics",
            lambda d: d["stale"] and d["error"] and d["kato"]["status"] == status,
            since=mark,
        )
        assert event.json()["sessions"]["active_count"] == 0  # the last known count
        assert not stream.of("session_event")
        mark = len(stream.events)
        await kato.fault("health", "ok")
        await stream.wait_for_event(
            "metrics", lambda d: d["kato"]["status"] == "healthy", since=mark
        )
        session = await stream.wait_for_event("session_event")
        assert session.json()["data"]["current_count"] == 1


@pytest.mark.parametrize("mode", ["error", "fallback", "garbage"])
async def test_a_failing_metrics_answer_keeps_the_last_figures_and_live_sessions(
    kato: Kato, mode: str
) -> None:
    # Pinned before the gateway's first read: KATO caches /metrics for 5 s, so a pin made
    # after it would reach the gateway only when that answer expires.
    kato.state.pin_resources({"cpu_percent": 42.0})
    with GatewayProcess(kato.url) as gateway:
        await _a_failing_metrics_answer_keeps_the_last_figures(kato, gateway, mode)


async def _a_failing_metrics_answer_keeps_the_last_figures(
    kato: Kato, gateway: GatewayProcess, mode: str
) -> None:
    async with SSEStream(f"{gateway.url}/events") as stream:
        await stream.wait_for_event(
            "metrics", lambda d: d["kato"]["resources"]["cpu_percent"] == 42
        )
        mark = len(stream.events)
        await kato.fault("metrics", mode)
        # Waited for from the fault on, not taken from the first stale tick: on a loaded
        # machine a read can time out (a true stale tick of its own), even before the pin.
        failing = await stream.wait_for_event(
            "metrics",
            lambda d: d["stale"] and "/metrics" in d["error"] and d["kato"]["status"] == "healthy",
            since=mark,
        )
        # KATO's fallback zeros are not shown as real figures: the last good ones stay
        assert failing.json()["kato"]["resources"]["cpu_percent"] == 42
        await kato.create_session()
        event = await stream.wait_for_event("session_event")
        assert event.json()["data"]["current_count"] == 1


async def failed_reads(http: httpx.AsyncClient, gateway: GatewayProcess) -> dict[str, float]:
    """The gateway's count of failed KATO reads, by source, from its /metrics."""
    text = (await http.get(f"{gateway.url}/metrics")).text
    return {
        sample.labels["source"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sse_monitor_upstream_errors_total"
    }


async def test_many_clients_share_one_poller(kato: Kato) -> None:
    env = {"SSE_MONITOR_MAX_STREAMS_PER_CLIENT": "1000"}  # all 200 come from 127.0.0.1
    with GatewayProcess(kato.url, env=env) as gateway:
        await _many_clients_share_one_poller(kato, gateway)


async def _many_clients_share_one_poller(kato: Kato, gateway: GatewayProcess) -> None:
    clients = [SSEStream(f"{gateway.url}/events") for _ in range(200)]
    await asyncio.gather(*(client.open() for client in clients))
    try:
        await asyncio.gather(*(client.wait_for_event("metrics") for client in clients))
        await kato.create_session()
        await asyncio.gather(
            *(client.wait_for_event("session_event", timeout=15) for client in clients)
        )
        target = clients[0].of("session_event")[0].id
        # wait for two more ticks, then compare what everyone got after the session event
        await asyncio.gather(
            *(
                client.wait_for(lambda events, c=client: len(c.of("metrics")) >= 4, timeout=15)
                for client in clients
            )
        )
        ids = {tuple(e.id for e in c.events if e.id and e.id >= target)[:3] for c in clients}
        assert {client.of("session_event")[0].id for client in clients} == {target}
        assert len(ids) <= 2  # identical, save a tick that some saw before closing
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    async with httpx.AsyncClient(verify=tls()) as http:

        async def between_two_ticks() -> tuple[int, dict[str, int], dict[str, float]] | None:
            """The counters read with no tick completing meanwhile (a loaded machine can
            take longer than a tick between two reads)."""
            polls = (await http.get(f"{gateway.url}/readyz")).json()["polls"]
            counts = await kato.request_counts()
            failed = await failed_reads(http, gateway)
            again = (await http.get(f"{gateway.url}/readyz")).json()["polls"]
            return (polls, counts, failed) if again == polls else None

        read = await eventually(between_two_ticks, what="a read between two ticks")
    polls, counts, failed = read
    # One /health and one /metrics per tick, whatever the number of clients; a tick may be
    # in flight while the counters are read, and a read that timed out on a loaded machine
    # may never have reached KATO.
    assert polls - 1 - failed["kato_health"] <= counts["/health"] <= polls + 1
    assert polls - 1 - failed["kato_metrics"] <= counts["/metrics"] <= polls + 1
    assert counts.get("/sessions/count", 0) == 0


async def test_a_client_that_stops_reading_does_not_delay_the_others(kato: Kato) -> None:
    # Big frames (a long issues list) and fast ticks fill the stuck client's buffers quickly.
    kato.state.set_health_issues([f"issue {n} " + "x" * 480 for n in range(20)])
    # (a KATO read that times out would make small frames: give it all of the short tick)
    # A stuck client that held the others up would stall them for the send timeout (3 s),
    # well past the 1.5 s gap allowed below, which a loaded machine's scheduling never reaches.
    env = {
        "SSE_MONITOR_POLL_INTERVAL": "0.05",
        "SSE_MONITOR_KATO_TIMEOUT": "0.049",
        "SSE_MONITOR_SEND_TIMEOUT": "3",
    }
    with GatewayProcess(kato.url, env=env) as gateway:
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: small window
        # and small segments: the server's kernel sizes its send buffer by them (up to megabytes
        # at loopback's 64 KiB), which took a minute to fill on a loaded machine
        stuck.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        stuck.connect(("127.0.0.1", gateway.port))
        stuck.sendall(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")  # and never reads

        async with (
            SSEStream(f"{gateway.url}/events") as healthy,
            httpx.AsyncClient(verify=tls()) as http,
        ):
            await healthy.wait_for_event("metrics")
            started = time.monotonic()

            async def streams_open() -> int:
                return (await http.get(f"{gateway.url}/readyz")).json()["streams"]

            while await streams_open() == 2:
                # Dropped once the socket buffers (megabytes) are full: a loaded machine fills
                # them slowly, with fewer frames, smaller too (a timed-out read lists no issues).
                # (100 s: the most pytest-timeout's 120 s per test leaves.)
                assert time.monotonic() - started < 100, "the stuck client was never dropped"
                seen = len(healthy.events)
                await healthy.wait_for(lambda events, seen=seen: len(events) > seen, timeout=2)
            dropped_after = time.monotonic() - started
            arrivals = [e.arrived for e in healthy.of("metrics") if e.arrived >= started]
        stuck.close()
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert len(arrivals) > 20
        # The reader got every tick's frame on time while the other client was stuck.
        assert max(gaps) < 1.5, f"the reading client stalled for {max(gaps):.2f} s"
        assert '"stream.dropped"' in gateway.log()
        assert dropped_after < 100


async def test_sigterm_ends_open_streams_within_two_seconds(kato: Kato) -> None:
    gateway = GatewayProcess(kato.url).start()
    try:
        streams = [SSEStream(f"{gateway.url}/events") for _ in range(3)]
        for stream in streams:
            await stream.open()
            await stream.wait_for_event("metrics")
        started = time.monotonic()
        gateway.terminate()
        await asyncio.wait_for(
            asyncio.gather(*(stream.ended.wait() for stream in streams)), timeout=5
        )
        ended = time.monotonic() - started
        exit_code = await asyncio.to_thread(gateway.proc.wait, 5)  # type: ignore[union-attr]
        exited = time.monotonic() - started
        assert ended < 2.0, f"streams ended after {ended:.2f} s"
        assert exited < 2.5, f"the process exited after {exited:.2f} s"
        # uvicorn shuts down cleanly, then re-raises the signal so a supervisor sees it
        assert exit_code in (0, -signal.SIGTERM)
        assert '"gateway.stopped"' in gateway.log()
        for stream in streams:
            await stream.close()
    finally:
        gateway.stop()


async def test_json_endpoints(kato: Kato) -> None:
    # The history is asserted exactly: a 1 s tick gives KATO reads 0.8 s, so a loaded machine
    # cannot turn a slow answer into a true (but unwanted here) unreachable/reachable pair.
    with GatewayProcess(kato.url, env={"SSE_MONITOR_POLL_INTERVAL": "1"}) as gateway:
        await _json_endpoints(kato, gateway)


async def _json_endpoints(kato: Kato, gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, verify=tls()) as http:
        count = (await http.get("/api/sessions/count")).json()
        assert count["active_sessions"] == 0 and count["stale"] is False
        assert count["timestamp"].endswith("+00:00")
        async with SSEStream(f"{gateway.url}/events") as stream:
            # connected first: a pushed session_event can arrive within milliseconds
            await stream.wait_for_event("metrics")
            await kato.create_session()
            await stream.wait_for_event("session_event")
        count = (await http.get("/api/sessions/count")).json()
        assert count["active_sessions"] == 1
        snapshot = (await http.get("/api/snapshot")).json()
        assert snapshot["sessions"]["active_count"] == 1
        assert set(snapshot["kato"]) >= {
            "status",
            "issues",
            "resources",
            "performance",
            "rates",
            "uptime_seconds",
            "latency_ms",
        }
        events = (await http.get("/api/events")).json()
        assert [e["event"] for e in events["events"]] == ["upstream", "session_event"]
        after = events["events"][0]["id"]
        later = (await http.get("/api/events", params={"after": after})).json()
        assert [e["event"] for e in later["events"]] == ["session_event"]
        assert later["reset"] is None
        newest = (await http.get("/api/events", params={"limit": 1})).json()
        assert [e["event"] for e in newest["events"]] == ["session_event"]
        assert newest["more"] is True
        foreign = (await http.get("/api/events", params={"after": "deadbeef-1"})).json()
        assert foreign["reset"] == "unknown_id"
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200
        counts_before = (await kato.request_counts())["/health"]
        for _ in range(20):
            await http.get("/api/sessions/count")
        # the fallback endpoint never calls KATO: at most the ticks that passed meanwhile
        assert (await kato.request_counts())["/health"] - counts_before < 20


async def test_kato_secrets_never_reach_clients(kato: Kato, gateway: GatewayProcess) -> None:
    kato.state.set_health_issues(["redis unreachable at redis://:s3cret-password@db:6379/0"])
    async with SSEStream(f"{gateway.url}/events") as stream:
        event = await stream.wait_for_event("metrics", lambda d: d["kato"]["issues"])
        assert "s3cret-password" not in event.data
        assert "redis://***@db:6379/0" in event.data
    async with httpx.AsyncClient(base_url=gateway.url, verify=tls()) as http:
        assert "s3cret" not in (await http.get("/api/snapshot")).text
    assert "s3cret" not in gateway.log()


@pytest.mark.parametrize(
    ("path", "status", "parameter"),
    [
        ("/api/events?limit=abc", 400, "limit"),
        ("/api/events?limit=0", 400, "limit"),
        ("/api/events?limit=100000", 400, "limit"),
        ("/api/events?after=" + "a" * 500, 400, "after"),
        ("/api/events?after=%01%02", 400, "after"),
        ("/events?last_event_id=%00bad", 400, "last_event_id"),
        ("/events?last_event_id=" + "9" * 300, 400, "last_event_id"),
        ("/nowhere", 404, None),
    ],
)
async def test_bad_input_gets_a_json_4xx(
    module_gateway: GatewayProcess, path: str, status: int, parameter: str | None
) -> None:
    async with httpx.AsyncClient(base_url=module_gateway.url, verify=tls()) as http:
        response = await http.get(path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status and body["error"]
    if parameter:
        assert body["parameter"] == parameter
    assert "Traceback" not in response.text


async def test_wrong_method_and_bad_header_get_json_errors(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, verify=tls()) as http:
        response = await http.post("/api/snapshot")
        assert response.status_code == 405
        assert response.json()["status"] == 405
        response = await http.get("/events", headers={"Last-Event-ID": "x" * 200})
        assert response.status_code == 400
        assert response.json()["parameter"] == "last-event-id"
        response = await http.head("/events")
        assert response.status_code == 200
    async with httpx.AsyncClient(base_url=gateway.url, verify=tls()) as http:
        ready = (await http.get("/readyz")).json()
    assert ready["streams"] == 0  # neither HEAD nor a refused request holds a subscription


async def test_keep_alive_comments_arrive_every_ping_interval(kato: Kato) -> None:
    env = {"SSE_MONITOR_PING_INTERVAL": "0.3", "SSE_MONITOR_POLL_INTERVAL": "30"}
    with GatewayProcess(kato.url, env=env) as gateway:
        async with SSEStream(f"{gateway.url}/events") as stream:
            await stream.wait_for_event("metrics")
            # no tick for 30 s: only keep-alives can arrive
            await stream.wait_for(lambda events: len(stream.parser.comments) >= 3, timeout=5)
            assert all(comment.startswith("ping") for comment in stream.parser.comments)


async def test_a_disconnect_frees_the_stream_at_once(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, verify=tls()) as http:
        streams = [SSEStream(f"{gateway.url}/events") for _ in range(5)]
        for stream in streams:
            await stream.open()
            await stream.wait_for_event("metrics")
        assert (await http.get("/readyz")).json()["streams"] == 5
        for stream in streams:
            await stream.close()
        deadline = time.monotonic() + 2
        while (open_streams := (await http.get("/readyz")).json()["streams"]) != 0:
            assert time.monotonic() < deadline, f"{open_streams} streams still held after 2 s"
            await asyncio.sleep(0.02)
