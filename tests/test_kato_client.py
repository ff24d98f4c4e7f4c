"""The KATO client against real HTTP servers: the simulated KATO, and odd answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sse_monitor.simulator import REDIS_URL, SimulatedKato, create_simulator_app
from sse_monitor.sources.kato import MAX_BODY_BYTES, KatoClient, UpstreamError
from tests.servers import ThreadedServer

HEALTHY = {
    "status": "healthy",
    "processor_status": "healthy",
    "issues": [],
    "uptime_seconds": 12.5,
    "active_sessions": 3,
}


class OddKato:
    """Serves whatever body the test sets, for paths /health and /metrics."""

    def __init__(self) -> None:
        self.answers: dict[str, Response] = {}

    def app(self) -> Starlette:
        async def answer(request: Request) -> Response:
            return self.answers[request.url.path]

        return Starlette(routes=[Route("/health", answer), Route("/metrics", answer)])


@pytest.fixture(scope="module")
def odd() -> Iterator[tuple[OddKato, str]]:
    kato = OddKato()
    with ThreadedServer(kato.app()) as server:
        yield kato, server.url


@pytest.fixture(scope="module")
def simulated() -> Iterator[tuple[SimulatedKato, str]]:
    state = SimulatedKato()
    with ThreadedServer(create_simulator_app(state)) as server:
        yield state, server.url


async def test_reads_health_and_metrics_from_kato(simulated) -> None:
    state, url = simulated
    state.reset()
    state.create_session("a")
    client = KatoClient(url, timeout=10)
    try:
        reading = await client.read()
    finally:
        await client.aclose()
    assert reading.health is not None and reading.metrics is not None
    assert reading.health.active_sessions == 1
    assert reading.health.status == "healthy"
    assert reading.health.latency_ms > 0
    assert set(reading.metrics.resources) == {"cpu_percent", "memory_percent", "disk_percent"}
    assert REDIS_URL not in repr(reading)


async def test_kato_health_check_failure_makes_the_count_unknown(simulated) -> None:
    state, url = simulated
    state.reset()
    state.create_session("a")
    state.set_fault("health", "error")
    client = KatoClient(url, timeout=10)
    try:
        health = await client.health()
    finally:
        await client.aclose()
        state.reset()
    assert health.status == "unhealthy"
    assert health.active_sessions is None  # KATO said 0; the truth is 1


@pytest.mark.parametrize(
    ("path", "response", "message"),
    [
        ("/health", Response("<html>oops", media_type="text/html"), "not JSON"),
        ("/health", JSONResponse([1, 2]), "not a JSON object"),
        ("/health", JSONResponse({**HEALTHY, "status": "fine"}), "unexpected status"),
        ("/health", JSONResponse({**HEALTHY, "active_sessions": True}), "not a count"),
        ("/health", JSONResponse({**HEALTHY, "active_sessions": -1}), "not a count"),
        ("/health", JSONResponse({**HEALTHY, "active_sessions": None}), "not a count"),
        ("/health", Response("Internal Server Error", status_code=500), "HTTP 500"),
        ("/health", Response("x" * (MAX_BODY_BYTES + 10)), "larger than"),
        ("/metrics", JSONResponse({"error": "boom"}), "reports an error: boom"),
        ("/metrics", JSONResponse({"resources": {}}), "collector failed"),
        ("/metrics", JSONResponse({"rates": {}}), "resources is missing"),
        ("/metrics", Response("Internal Server Error", status_code=500), "HTTP 500"),
    ],
)
async def test_odd_answers_are_failed_reads(odd, path: str, response: Response, message: str):
    kato, url = odd
    kato.answers[path] = response
    client = KatoClient(url, timeout=10)
    try:
        with pytest.raises(UpstreamError, match=message):
            await (client.health() if path == "/health" else client.metrics())
    finally:
        await client.aclose()


async def test_non_finite_and_odd_figures_become_null(odd) -> None:
    kato, url = odd
    sections = {
        "resources": {"cpu_percent": "NaN", "memory_percent": True, "disk_percent": 1e400},
        "performance": {"error_rate": 0.5},
        "rates": {"requests_per_second": 2},
    }
    kato.answers["/metrics"] = Response(
        '{"resources": {"cpu_percent": NaN, "memory_percent": true, "disk_percent": Infinity},'
        ' "performance": {"error_rate": 0.5}, "rates": {"requests_per_second": 2}, "error": null}',
        media_type="application/json",
    )
    client = KatoClient(url, timeout=10)
    try:
        metrics = await client.metrics()
    finally:
        await client.aclose()
    assert metrics.resources == dict.fromkeys(sections["resources"])
    assert metrics.performance["error_rate"] == 0.5
    assert metrics.performance["total_requests"] is None
    assert metrics.rates["requests_per_second"] == 2


async def test_refused_and_slow_are_failed_reads(simulated) -> None:
    state, url = simulated
    refused = KatoClient("http://127.0.0.1:9", timeout=1)
    try:
        reading = await refused.read()
    finally:
        await refused.aclose()
    assert reading.health is None and "cannot connect" in (reading.health_error or "")
    state.set_fault("all", "slow", delay=3)
    slow = KatoClient(url, timeout=0.3)
    try:
        reading = await slow.read()
    finally:
        await slow.aclose()
        state.reset()
    assert reading.health is None and reading.metrics is None
    assert "no answer within 0.3 s" in (reading.health_error or "")
