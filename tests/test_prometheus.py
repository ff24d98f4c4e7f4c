"""GET /metrics: parses as the Prometheus text format, and its counters move."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import Kato
from tests.support.sse_client import SSEStream
from tests.support.waiting import eventually

VIEWER = "viewer-token-3f9a0c1d2e4b5a69"


async def scrape(gateway: GatewayProcess) -> dict[tuple[str, tuple], float]:
    async with httpx.AsyncClient(verify=tls()) as client:
        response = await client.get(
            f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {VIEWER}"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def streams_open(gateway: GatewayProcess, count: int) -> bool:
    return value(await scrape(gateway), "sse_monitor_streams_open") == count


async def test_the_counters_move(kato: Kato) -> None:
    env = {"SSE_MONITOR_TOKEN": VIEWER, "SSE_MONITOR_MAX_STREAMS_PER_CLIENT": "2"}
    with GatewayProcess(kato.url, env=env) as gateway:
        async with httpx.AsyncClient(verify=tls()) as client:
            assert (await client.get(f"{gateway.url}/metrics")).status_code == 401
        before = await scrape(gateway)
        url = f"{gateway.url}/events?token={VIEWER}"
        async with SSEStream(url) as one, SSEStream(f"{url}&topics=sessions") as two:
            await one.wait_for_event("metrics")
            await kato.create_session()
            await two.wait_for_event("session_event")
            async with httpx.AsyncClient(verify=tls()) as client:
                refused = await client.get(url)
            assert refused.status_code == 429
            during = await scrape(gateway)
            assert value(during, "sse_monitor_streams_open") == 2
            assert value(during, "sse_monitor_streams_open_by_topic", topic="sessions") == 2
            assert value(during, "sse_monitor_streams_open_by_topic", topic="metrics") == 1
        # The streams' places are freed once the gateway sees them go: on its own time.
        await eventually(lambda: streams_open(gateway, 0), what="the two streams to be freed")
        async with SSEStream(url) as watcher:
            await watcher.wait_for_event("metrics")
            await kato.fault("health", "http500")
            await watcher.wait_for_event("upstream", lambda d: not d["reachable"])
        await eventually(lambda: streams_open(gateway, 0), what="the watcher to be freed")
        after = await scrape(gateway)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("sse_monitor_events_published_total", event="session_event") == 1
    assert moved("sse_monitor_events_published_total", event="metrics") >= 2
    assert moved("sse_monitor_frames_sent_total") >= 3
    assert moved("sse_monitor_connections_refused_total", reason="max_streams_per_client") == 1
    assert moved("sse_monitor_connections_refused_total", reason="unauthorized") == 0
    assert value(before, "sse_monitor_connections_refused_total", reason="unauthorized") == 1
    assert moved("sse_monitor_streams_closed_total", reason="client") >= 2
    assert moved("sse_monitor_upstream_errors_total", source="kato_health") >= 1
    assert moved("sse_monitor_poll_duration_seconds_count") >= 2
    assert value(after, "sse_monitor_poll_duration_seconds_sum") > 0
    assert value(after, "sse_monitor_streams_open") == 0
    for name in ("sse_monitor_frames_coalesced_total", "sse_monitor_frames_dropped_total"):
        assert (name, ()) in after


async def test_process_figures_and_tasks_follow_the_streams(kato: Kato) -> None:
    """RSS, open fds (prometheus-client's process collector) and the event loop's tasks: each
    stream holds a socket and two tasks, and gives them back when it ends (what a soak watches)."""
    env = {"SSE_MONITOR_TOKEN": VIEWER}
    with GatewayProcess(kato.url, env=env) as gateway:
        before = await scrape(gateway)
        assert value(before, "process_resident_memory_bytes") > 10 * 2**20
        assert value(before, "process_open_fds") > 0
        # Idle: the fewest of a few scrapes (a tick in progress holds a task or two of its own).
        idle_tasks = min(
            [value(before, "sse_monitor_asyncio_tasks")]
            + [value(await scrape(gateway), "sse_monitor_asyncio_tasks") for _ in range(4)]
        )
        assert idle_tasks >= 1  # at least the scrape's own request
        url = f"{gateway.url}/events?token={VIEWER}"
        async with SSEStream(url) as one, SSEStream(url) as two:
            await one.wait_for_event("metrics")
            await two.wait_for_event("metrics")
            during = await scrape(gateway)
            assert value(during, "sse_monitor_asyncio_tasks") >= idle_tasks + 4
            assert value(during, "process_open_fds") >= value(before, "process_open_fds") + 2

        async def tasks_back_to_idle() -> bool:  # once the gateway sees the clients go
            return value(await scrape(gateway), "sse_monitor_asyncio_tasks") <= idle_tasks

        await eventually(tasks_back_to_idle, what="the streams' tasks to end")
