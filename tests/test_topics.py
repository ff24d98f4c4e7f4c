"""GET /events?topics=: every combination receives exactly its events, live and replayed."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import httpx
import pytest

from sse_monitor.bus.event import TOPICS
from tests.support.alert_rules import status_rule
from tests.support.docker_engine import DockerEngineProcess
from tests.support.gateway import GatewayProcess
from tests.support.kato import Kato
from tests.support.sse_client import SSEStream

EVENTS_OF = {
    "metrics": {"metrics"},
    "containers": {"containers", "container_event"},
    "sessions": {"session_event"},
    "alerts": {"alert", "alerts"},
}
EVERYONE = {"upstream", "reset"}
COMBINATIONS = [
    combo for size in range(1, len(TOPICS) + 1) for combo in itertools.combinations(TOPICS, size)
]
RULES = status_rule("kato_degraded", "degraded", "warning")


def expected(topics: tuple[str, ...]) -> set[str]:
    return set().union(*(EVENTS_OF[topic] for topic in topics))


async def test_each_combination_gets_exactly_its_events(
    kato: Kato, docker: DockerEngineProcess, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    await asyncio.to_thread(rules.write_text, RULES)
    docker.run("worker")
    env = {
        "DOCKER_HOST": docker.host,
        "SSE_MONITOR_CONTAINER_STATS": "on",
        "SSE_MONITOR_CONTAINERS": "worker",
        "SSE_MONITOR_ALERT_RULES": str(rules),
        "SSE_MONITOR_POLL_INTERVAL": "0.3",
    }
    with GatewayProcess(kato.url, env=env) as gateway:
        streams = {
            combo: SSEStream(f"{gateway.url}/events?topics={','.join(combo)}")
            for combo in COMBINATIONS
        }
        everything = SSEStream(f"{gateway.url}/events")  # no topics: all of them
        await asyncio.gather(everything.open(), *(s.open() for s in streams.values()))
        try:
            await everything.wait_for(
                lambda e: {"metrics", "containers"} <= set(everything.names()), timeout=15
            )
            await kato.create_session()
            await kato.fault("health", "degraded")
            await asyncio.to_thread(docker.docker, "stop", "-t", "0", "worker")
            for combo, stream in [*streams.items(), (TOPICS, everything)]:
                want = expected(combo)
                await stream.wait_for(lambda e, s=stream, w=want: w <= set(s.names()), timeout=15)
            # Two more polls, so that anything wrongly delivered had its chance to arrive.
            count = len(everything.of("metrics"))
            await everything.wait_for(lambda e: len(everything.of("metrics")) >= count + 2)
            for combo, stream in streams.items():
                got = set(stream.names())
                assert got - EVERYONE == expected(combo), combo
            assert set(everything.names()) - EVERYONE == expected(TOPICS)
        finally:
            await asyncio.gather(everything.close(), *(s.close() for s in streams.values()))


async def test_a_resumed_stream_is_replayed_only_its_topics(kato: Kato, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    await asyncio.to_thread(rules.write_text, status_rule("kato_degraded", "unhealthy", "warning"))
    with GatewayProcess(kato.url, env={"SSE_MONITOR_ALERT_RULES": str(rules)}) as gateway:
        async with SSEStream(f"{gateway.url}/events?topics=sessions") as first:
            await kato.create_session()
            start = await first.wait_for_event("session_event")
        async with SSEStream(f"{gateway.url}/events") as watcher:
            await watcher.wait_for_event("metrics")
            await kato.create_session()
            await kato.fault("health", "unhealthy")  # a durable `alert`, KATO still reachable
            await watcher.wait_for_event("alert")
            await watcher.wait_for_event("session_event")
        headers = {"Last-Event-ID": start.id or ""}
        async with SSEStream(f"{gateway.url}/events?topics=sessions", headers=headers) as again:
            replayed = await again.wait_for_event("session_event")
            assert replayed.json()["data"]["current_count"] == 2
            assert set(again.names()) == {"session_event"}
        async with SSEStream(f"{gateway.url}/events?topics=alerts", headers=headers) as alerts:
            # The replay and the newer state may arrive in separate reads: wait for both.
            await alerts.wait_for(lambda e: {"alert", "alerts"} <= set(alerts.names()))
            assert set(alerts.names()) == {"alert", "alerts"}


@pytest.mark.parametrize("topics", ["weather", "metrics,weather", "", ","])
def test_an_unknown_topic_is_a_400_listing_the_valid_ones(
    module_gateway: GatewayProcess, topics: str
) -> None:
    response = httpx.get(f"{module_gateway.url}/events", params={"topics": topics})
    assert response.status_code == 400
    body = response.json()
    assert body["parameter"] == "topics"
    assert all(topic in body["error"] for topic in TOPICS)
    if "weather" in topics:
        assert body["valid_topics"] == list(TOPICS)
        assert "'weather'" in body["error"]
