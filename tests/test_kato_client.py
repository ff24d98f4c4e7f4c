"""The KATO client against real HTTP servers: the simulated KATO, and odd answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import aclosing

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sse_monitor.simulator.answers import REDIS_URL
from sse_monitor.simulator.app import create_simulator_app
from sse_monitor.simulator.state import SimulatedKato
from sse_monitor.sources.kato import MAX_BODY_BYTES, KatoClient, UpstreamError
from tests.support.servers import ThreadedServer

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
def simulated_server() -> Iterator[tuple[SimulatedKato, str]]:
    state = SimulatedKato()
    with ThreadedServer(create_simulator_app(state)) as server:
        yield state, server.url


@pytest.fixture
def simulated(simulated_server: tuple[SimulatedKato, str]) -> Iterator[tuple[SimulatedKato, str]]:
    """The module's simulated KATO, reset before and after the test (its sessions, its faults)."""
    state, url = simulated_server
    state.reset()
    yield state, url
    state.reset()


async def test_reads_health_and_metrics_from_kato(simulated) -> None:
    state, url = simulated
    state.create_session("a")
    async with aclosing(KatoClient(url, timeout=10)) as client:
        reading = await client.read()
    assert reading.health is not None and reading.metrics is not None
    assert reading.health.active_sessions == 1
    assert reading.health.status == "healthy"
    assert reading.health.latency_ms > 0
    assert set(reading.metrics.resources) == {"cpu_percent", "memory_percent", "disk_percent"}
    assert REDIS_URL not in repr(reading)


async def test_kato_health_check_failure_makes_the_count_unknown(simulated) -> None:
    state, url = simulated
    state.create_session("a")
    state.set_fault("health", "error")
    async with aclosing(KatoClient(url, timeout=10)) as client:
        health = await client.health()
    assert health.status == "unhealthy"
    assert health.active_sessions is None  # KATO said 0; the truth is 1


@pytest.mark.parametrize(
    ("path", "response", "message"),
    [
        ("/health", Response("<html>oops", media_type="text/html"), "not JSON"),
        ("/health", JSONResponse([1, 2]), "not a JSON object"),
        ("/health", Response(b"", media_type="application/json"), "not JSON"),
        ("/health", Response(b'{"status": "\xff"}', media_type="application/json"), "not JSON"),
        ("/health", Response('{"a": 1', media_type="application/json"), "not JSON"),
        ("/health", Response("[" * 100_000 + "]" * 100_000), "nested too deeply"),
        ("/health", JSONResponse(None), "not a JSON object"),
        ("/health", Response("Internal Server Error", status_code=500), "HTTP 500"),
        ("/health", Response("x" * (MAX_BODY_BYTES + 10)), "larger than"),
        ("/metrics", JSONResponse({"error": "boom"}), "reports an error: boom"),
        ("/metrics", JSONResponse({"resources": {}}), "collector failed"),
        ("/metrics", JSONResponse({"rates": {}}), "collector failed"),
        ("/metrics", JSONResponse({"rates": 1, "resources": []}), "none of resources"),
        ("/metrics", Response("Internal Server Error", status_code=500), "HTTP 500"),
    ],
)
async def test_odd_answers_are_failed_reads(odd, path: str, response: Response, message: str):
    kato, url = odd
    kato.answers[path] = response
    async with aclosing(KatoClient(url, timeout=10)) as client:
        with pytest.raises(UpstreamError, match=message):
            await (client.health() if path == "/health" else client.metrics())


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("status", "fine", "unexpected status 'fine'"),
        ("status", {"nested": ["x"]}, "unexpected status '<a JSON object of 1>'"),
        ("active_sessions", True, "not a count"),
        ("active_sessions", -1, "not a count"),
        ("active_sessions", None, "not a count"),
        ("active_sessions", 3.0, "not a count"),
        ("active_sessions", "3", "not a count"),
        ("active_sessions", 10**400, "not a count"),
        ("issues", "disk full", "issues is not a list"),
    ],
)
async def test_an_odd_health_field_spoils_only_itself(
    odd, field: str, value: object, problem: str
) -> None:
    kato, url = odd
    kato.answers["/health"] = Response(json.dumps({**HEALTHY, field: value}))
    async with aclosing(KatoClient(url, timeout=2)) as client:
        health = await client.health()
    assert any(problem in text for text in health.problems), health.problems
    assert health.uptime_seconds == 12.5  # the rest of the answer stands
    if field == "active_sessions":
        assert health.active_sessions is None and health.status == "healthy"
    else:
        assert health.active_sessions == 3
    if field == "status":
        assert health.status == "unknown"


async def test_defect_8_a_huge_number_is_null_not_a_failed_read(odd) -> None:
    """10**400 overflowed the finite check, and KATO turned unreachable for one field."""
    kato, url = odd
    huge = "1" + "0" * 400
    kato.answers["/health"] = Response(
        f'{{"status": "healthy", "issues": [], "active_sessions": 2, "uptime_seconds": {huge}}}'
    )
    kato.answers["/metrics"] = Response(
        f'{{"resources": {{"cpu_percent": {huge}, "memory_percent": 5, "disk_percent": 1e999}},'
        f' "performance": {{"total_requests": -{huge}0000}}, "rates": {{"requests_per_second": 2}},'
        f' "error": null}}'
    )
    async with aclosing(KatoClient(url, timeout=2)) as client:
        reading = await client.read()
    assert reading.health_error is None and reading.metrics_error is None
    assert reading.health is not None and reading.metrics is not None
    assert reading.health.uptime_seconds is None and reading.health.active_sessions == 2
    assert reading.metrics.resources == {
        "cpu_percent": None,
        "memory_percent": 5,
        "disk_percent": None,
    }
    assert reading.metrics.performance["total_requests"] is None
    assert reading.metrics.rates["requests_per_second"] == 2


async def test_a_body_declared_too_large_is_refused_unread(odd) -> None:
    kato, url = odd
    kato.answers["/health"] = Response(b"{}", headers={"content-length": str(10**12)})
    async with aclosing(KatoClient(url, timeout=2)) as client:
        with pytest.raises(UpstreamError, match="larger than"):
            await client.health()


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
    async with aclosing(KatoClient(url, timeout=10)) as client:
        metrics = await client.metrics()
    assert metrics.resources == dict.fromkeys(sections["resources"])
    assert metrics.performance["error_rate"] == 0.5
    assert metrics.performance["total_requests"] is None
    assert metrics.rates["requests_per_second"] == 2


async def test_refused_and_slow_are_failed_reads(simulated) -> None:
    state, url = simulated
    async with aclosing(KatoClient("http://127.0.0.1:9", timeout=1)) as refused:
        reading = await refused.read()
    assert reading.health is None and "cannot connect" in (reading.health_error or "")
    state.set_fault("all", "slow", delay=3)
    async with aclosing(KatoClient(url, timeout=0.3)) as slow:
        reading = await slow.read()
    assert reading.health is None and reading.metrics is None
    assert "no answer within 0.3 s" in (reading.health_error or "")
