"""The simulated KATO, over real HTTP: shapes, quirks, caches, workers, TTLs, faults, controls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from sse_monitor.simulator.answers import REDIS_URL
from sse_monitor.simulator.app import create_simulator_app
from sse_monitor.simulator.state import ROUTE_TEMPLATES, SimulatedKato
from tests.support.kato import SESSION_FIELDS
from tests.support.servers import ThreadedServer

HEX32 = re.compile(r"^[0-9a-f]{32}$")
SESSION_ID = re.compile(r"^session-[0-9a-f]{32}-\d{13}$")
ZULU = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
START = 1_795_610_000.0

Serve = Callable[..., httpx.Client]


class FakeClock:
    """A clock the test moves by hand, so TTLs and caches expire exactly when told."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start simulators under uvicorn on demand; each call returns a client bound to one."""
    with contextlib.ExitStack() as stack:

        def start(kato: SimulatedKato | None = None, **options: Any) -> httpx.Client:
            server = stack.enter_context(ThreadedServer(create_simulator_app(kato, **options)))
            return stack.enter_context(httpx.Client(base_url=server.url, timeout=5.0))

        yield start


@pytest.fixture(scope="module")
def module_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clock(module_clock: FakeClock) -> FakeClock:
    """The module's fake clock, set back to START for each test."""
    module_clock.now = START
    return module_clock


@pytest.fixture(scope="module")
def shared_client(module_clock: FakeClock) -> Iterator[httpx.Client]:
    # One server for the many tests that need no special configuration: uvicorn takes
    # about 0.2 s to stop, which adds up over fifty tests.
    kato = SimulatedKato(clock=module_clock, metrics_cache_seconds=0, seed=1)
    with (
        ThreadedServer(create_simulator_app(kato)) as server,
        httpx.Client(base_url=server.url, timeout=5.0) as client,
    ):
        yield client


@pytest.fixture
def client(shared_client: httpx.Client, clock: FakeClock) -> httpx.Client:
    """A one-worker simulator on a fake clock, without the metrics cache, freshly reset."""
    assert shared_client.post("/_sim/reset").status_code == 200
    return shared_client


def create(client: httpx.Client, node_id: str = "node", **fields: Any) -> dict[str, Any]:
    response = client.post("/sessions", json={"node_id": node_id, **fields})
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


def active_sessions(client: httpx.Client) -> int:
    count: int = client.get("/health").json()["active_sessions"]
    return count


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# Shapes


def test_health_shape(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "status",
        "processor_status",
        "service_name",
        "uptime_seconds",
        "issues",
        "metrics_collected",
        "last_collection",
        "active_sessions",
        "timestamp",
    ]
    assert body["status"] == "healthy"
    assert body["processor_status"] == "healthy"
    assert body["service_name"] == "kato"
    assert isinstance(body["uptime_seconds"], float)
    assert body["issues"] == []
    assert isinstance(body["metrics_collected"], int)
    assert isinstance(body["last_collection"], float)
    assert body["active_sessions"] == 0
    assert body["timestamp"].endswith("+00:00")
    assert datetime.fromisoformat(body["timestamp"]).timestamp() == pytest.approx(START)


def test_metrics_shape(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "timestamp",
        "sessions",
        "performance",
        "resources",
        "databases",
        "rates",
        "processor_manager",
        "uptime_seconds",
        "active_sessions",
        "error",
    ]
    assert body["timestamp"] == START
    assert body["sessions"] == {
        "total_created": 0.0,
        "total_deleted": 0.0,
        "active": 0,
        "operations_total": 0.0,
    }
    performance = body["performance"]
    assert list(performance) == [
        "total_requests",
        "total_errors",
        "error_rate",
        "average_response_time",
    ]
    assert all(isinstance(value, float) for value in performance.values())
    assert performance["total_requests"] >= 1.0
    assert list(body["resources"]) == ["cpu_percent", "memory_percent", "disk_percent"]
    assert all(isinstance(value, float) for value in body["resources"].values())
    zeros = {"operations": 0.0, "errors": 0.0, "avg_response_time": 0.0}
    assert body["databases"] == {"clickhouse": zeros, "qdrant": zeros, "redis": zeros}
    assert list(body["rates"]) == [
        "requests_per_second",
        "requests_per_minute",
        "errors_per_minute",
    ]
    assert body["rates"]["errors_per_minute"] == 0
    assert body["processor_manager"] == {
        "total_processors": 0,
        "max_processors": 100,
        "eviction_ttl_seconds": 3600,
        "processors": [],
    }
    assert body["uptime_seconds"] is None
    assert body["active_sessions"] is None
    assert body["error"] is None


def test_metrics_cpu_is_zero_for_the_first_ten_seconds(
    client: httpx.Client, clock: FakeClock
) -> None:
    assert client.get("/metrics").json()["resources"]["cpu_percent"] == 0.0
    clock.advance(10)
    assert client.get("/metrics").json()["resources"]["cpu_percent"] > 0.0


def test_sessions_count_shape(client: httpx.Client) -> None:
    create(client)
    response = client.get("/sessions/count")
    assert response.status_code == 200
    assert response.json() == {"active_session_count": 1}


def test_status_echoes_the_redis_url(client: httpx.Client) -> None:
    response = client.get("/status")
    assert response.status_code == 200
    assert response.json()["redis_url"] == REDIS_URL == "redis://:s3cret-password@localhost:6379/0"


def test_every_response_carries_a_trace_id(client: httpx.Client) -> None:
    responses = [
        client.get("/health"),
        client.get("/metrics"),
        client.get("/sessions"),
        client.get("/nowhere"),
        client.post("/sessions", json={}),
        client.delete("/sessions/missing"),
        client.get("/_sim/stats"),
    ]
    trace_ids = [response.headers["x-trace-id"] for response in responses]
    assert all(HEX32.match(trace_id) for trace_id in trace_ids)
    assert len(set(trace_ids)) == len(trace_ids)


# Routing errors


def test_get_sessions_is_405_allow_post(client: httpx.Client) -> None:
    response = client.get("/sessions")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert response.headers["allow"] == "POST"


def test_wrong_method_on_a_known_route_is_405(client: httpx.Client) -> None:
    response = client.post("/health")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert response.headers["allow"] == "GET"


def test_unknown_route_is_404(client: httpx.Client) -> None:
    response = client.get("/ws/events")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


# Sessions


def test_create_session(client: httpx.Client) -> None:
    session = create(client, "dash_test", ttl_seconds=120, metadata={"who": "test"})
    assert list(session) == SESSION_FIELDS
    assert SESSION_ID.match(session["session_id"])
    assert session["session_id"].endswith(f"-{int(START * 1000)}")
    assert session["node_id"] == "dash_test"
    assert ZULU.match(session["created_at"])
    assert ZULU.match(session["expires_at"])
    created = datetime.fromisoformat(session["created_at"])
    expires = datetime.fromisoformat(session["expires_at"])
    assert (expires - created).total_seconds() == 120
    assert session["ttl_seconds"] == 120
    assert session["metadata"] == {"who": "test"}
    assert session["session_config"] == {}


def test_create_session_defaults(client: httpx.Client) -> None:
    session = create(client)
    assert session["ttl_seconds"] == 3600
    assert session["metadata"] == {}
    assert session["session_config"] == {}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            json.dumps({"ttl_seconds": 60}),
            {
                "type": "missing",
                "loc": ["body", "node_id"],
                "msg": "Field required",
                "input": {"ttl_seconds": 60},
            },
        ),
        (
            json.dumps({"node_id": 5}),
            {
                "type": "string_type",
                "loc": ["body", "node_id"],
                "msg": "Input should be a valid string",
                "input": 5,
            },
        ),
        (
            "<html>not json",
            {
                "type": "json_invalid",
                "loc": ["body", 0],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": "Expecting value"},
            },
        ),
        ("", {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}),
    ],
    ids=["missing-node-id", "node-id-not-a-string", "not-json", "empty"],
)
def test_create_session_validation(
    client: httpx.Client, content: str, expected: dict[str, Any]
) -> None:
    response = client.post(
        "/sessions", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json() == {"detail": [expected]}
    assert active_sessions(client) == 0


def test_get_session(client: httpx.Client) -> None:
    session = create(client, ttl_seconds=120)
    response = client.get(f"/sessions/{session['session_id']}")
    assert response.status_code == 200
    assert response.json() == session


def test_get_unknown_session_is_404_detail(client: httpx.Client) -> None:
    response = client.get("/sessions/session-nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Session session-nope not found or expired"}


def test_get_session_slides_the_ttl(client: httpx.Client, clock: FakeClock) -> None:
    session = create(client, ttl_seconds=10)
    clock.advance(8)
    slid = client.get(f"/sessions/{session['session_id']}").json()
    assert slid["expires_at"] > session["expires_at"]
    assert slid["ttl_seconds"] == 10
    clock.advance(8)  # 16 s after creation: alive only because the GET slid its TTL
    assert active_sessions(client) == 1


def test_delete_session(client: httpx.Client) -> None:
    session_id = create(client)["session_id"]
    response = client.delete(f"/sessions/{session_id}")
    assert response.status_code == 200
    assert response.json() == {"status": "deleted", "session_id": session_id}
    assert active_sessions(client) == 0

    again = client.delete(f"/sessions/{session_id}")
    assert again.status_code == 404
    assert again.json() == {
        "error": {
            "code": "SESSION_NOT_FOUND",
            "message": f"Session {session_id} not found or expired",
            "session_id": session_id,
        }
    }


def test_sessions_expire_by_ttl(client: httpx.Client, clock: FakeClock) -> None:
    short = create(client, ttl_seconds=5)["session_id"]
    create(client, ttl_seconds=60)
    clock.advance(4.9)
    assert active_sessions(client) == 2
    clock.advance(0.1)
    assert active_sessions(client) == 1
    assert client.get("/sessions/count").json() == {"active_session_count": 1}
    assert client.get("/metrics").json()["sessions"]["active"] == 1
    assert client.get(f"/sessions/{short}").status_code == 404
    assert client.delete(f"/sessions/{short}").json()["error"]["code"] == "SESSION_NOT_FOUND"


def test_sim_expire(client: httpx.Client) -> None:
    session_id = create(client)["session_id"]
    response = client.post("/_sim/expire", json={"session_id": session_id})
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert active_sessions(client) == 0
    assert client.get(f"/sessions/{session_id}").status_code == 404

    gone = client.post("/_sim/expire", json={"session_id": session_id})
    assert gone.status_code == 404
    assert "error" in gone.json()
    bad = client.post("/_sim/expire", json={"session": session_id})
    assert bad.status_code == 400
    assert isinstance(bad.json()["error"], str)


def test_sessions_are_counted_by_the_simulator_api() -> None:
    clock = FakeClock()
    kato = SimulatedKato(clock=clock)
    first = kato.create_session("a", ttl_seconds=1)
    kato.create_session("b")
    assert kato.active_count() == 2
    assert kato.delete_session(first["session_id"]) is True
    assert kato.delete_session(first["session_id"]) is False
    kato.create_session("c", ttl_seconds=1)
    clock.advance(1)
    assert kato.active_count() == 1


# Caches and workers


def test_metrics_cache_lags_then_catches_up(serve: Serve, clock: FakeClock) -> None:
    # On the fake clock: on a loaded machine 0.75 s of real time can pass between two reads,
    # and the cache would expire before the lag is seen.
    client = serve(SimulatedKato(clock=clock, metrics_cache_seconds=0.75))
    assert client.get("/metrics").json()["sessions"]["active"] == 0
    assert client.get("/sessions/count").json() == {"active_session_count": 0}
    create(client)
    assert active_sessions(client) == 1  # /health is never cached
    assert client.get("/metrics").json()["sessions"]["active"] == 0
    assert client.get("/sessions/count").json() == {"active_session_count": 0}
    clock.advance(0.75)
    assert client.get("/metrics").json()["sessions"]["active"] == 1
    assert client.get("/sessions/count").json() == {"active_session_count": 1}


def test_metrics_cache_expires_after_exactly_its_ttl(serve: Serve, clock: FakeClock) -> None:
    client = serve(SimulatedKato(clock=clock, metrics_cache_seconds=5))
    first = client.get("/metrics").json()
    create(client)
    clock.advance(4.9)
    assert client.get("/metrics").json() == first  # timestamp included: the same cached body
    clock.advance(0.1)
    fresh = client.get("/metrics").json()
    assert fresh["sessions"]["active"] == 1
    assert fresh["timestamp"] == START + 5


def test_workers_answer_from_their_own_counters(serve: Serve, clock: FakeClock) -> None:
    client = serve(SimulatedKato(workers=2, clock=clock, metrics_cache_seconds=0))
    totals = [client.get("/metrics").json()["performance"]["total_requests"] for _ in range(4)]
    assert totals == [1.0, 1.0, 2.0, 2.0]  # round-robin: worker 0, 1, 0, 1
    uptimes = [client.get("/health").json()["uptime_seconds"] for _ in range(2)]
    assert uptimes[0] != uptimes[1]


def test_workers_have_their_own_caches(serve: Serve, clock: FakeClock) -> None:
    client = serve(SimulatedKato(workers=2, clock=clock, metrics_cache_seconds=5))
    assert client.get("/sessions/count").json()["active_session_count"] == 0  # worker 0 caches
    create(client)  # worker 1
    assert client.get("/sessions/count").json()["active_session_count"] == 0  # worker 0: cached
    assert client.get("/sessions/count").json()["active_session_count"] == 1  # worker 1: fresh
    assert active_sessions(client) == 1  # worker 0, but /health is never cached
    counts = client.get("/_sim/stats").json()["requests"]
    assert counts["/sessions/count"] == 3


# Faults


def set_fault(client: httpx.Client, endpoint: str, mode: str, **extra: Any) -> None:
    response = client.post("/_sim/fault", json={"endpoint": endpoint, "mode": mode, **extra})
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}


def test_fault_error_on_metrics(client: httpx.Client) -> None:
    create(client)
    set_fault(client, "metrics", "error")
    response = client.get("/metrics")
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    for section in ("sessions", "performance", "resources", "databases", "rates"):
        assert section not in body  # KATO's outer except branch carries no figures
    assert body["active_sessions"] == 0  # and a 0 count, whatever the truth (1 here)
    assert isinstance(body["uptime_seconds"], float)
    assert client.get("/health").json()["status"] == "healthy"


def test_fault_fallback_on_metrics(client: httpx.Client) -> None:
    create(client)
    set_fault(client, "metrics", "fallback")
    body = client.get("/metrics").json()
    assert "error" not in body
    assert body["rates"] == {}
    assert body["resources"] == {"cpu_percent": 0.0, "memory_percent": 0.0, "disk_percent": 0.0}
    assert body["active_sessions"] == 0
    response = client.post("/_sim/fault", json={"endpoint": "health", "mode": "fallback"})
    assert response.status_code == 400


def test_fault_error_on_health(client: httpx.Client) -> None:
    set_fault(client, "health", "error")
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["issues"] and all(isinstance(issue, str) for issue in body["issues"])
    assert client.get("/metrics").json()["error"] is None


@pytest.mark.parametrize("mode", ["unhealthy", "degraded"])
def test_fault_health_status(client: httpx.Client, mode: str) -> None:
    set_fault(client, "health", mode)
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == mode
    assert len(response.json()["issues"]) == 1


@pytest.mark.parametrize("endpoint", ["health", "metrics"])
def test_fault_garbage(client: httpx.Client, endpoint: str) -> None:
    set_fault(client, endpoint, "garbage")
    response = client.get(f"/{endpoint}")
    assert response.status_code == 200
    assert response.text == "<html>oops"
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize("endpoint", ["health", "metrics"])
def test_fault_http500(client: httpx.Client, endpoint: str) -> None:
    set_fault(client, endpoint, "http500")
    response = client.get(f"/{endpoint}")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("endpoint", ["health", "metrics"])
def test_fault_slow(client: httpx.Client, endpoint: str) -> None:
    set_fault(client, endpoint, "slow", delay=0.2)
    started = time.perf_counter()
    response = client.get(f"/{endpoint}")
    assert time.perf_counter() - started >= 0.2
    assert response.status_code == 200
    assert response.json()["timestamp"]


def test_fault_all_then_ok(client: httpx.Client) -> None:
    set_fault(client, "all", "http500")
    assert client.get("/health").status_code == 500
    assert client.get("/metrics").status_code == 500
    assert client.get("/sessions/count").status_code == 200
    set_fault(client, "all", "ok")
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"endpoint": "sessions", "mode": "error"},
        {"endpoint": "health", "mode": "explode"},
        {"endpoint": "metrics", "mode": "degraded"},
        {"endpoint": "health", "mode": "slow", "delay": -1},
        {"endpoint": "health", "mode": "slow", "delay": "soon"},
        ["health", "error"],
    ],
)
def test_fault_bad_input_is_400(client: httpx.Client, body: Any) -> None:
    response = client.post("/_sim/fault", json=body)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


def test_fault_non_json_is_400(client: httpx.Client) -> None:
    response = client.post("/_sim/fault", content="mode=error")
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


# Controls

FRESH_STATS = {
    "requests": dict.fromkeys(ROUTE_TEMPLATES, 0),
    "websockets": 0,
    "websockets_by_worker": [0],
    "pushed": 0,
}


def test_sim_stats_counts_requests_per_route(client: httpx.Client) -> None:
    assert client.get("/_sim/stats").json() == FRESH_STATS
    client.get("/health")
    client.get("/health")
    client.get("/metrics")
    session_id = create(client)["session_id"]
    client.get(f"/sessions/{session_id}")
    client.delete(f"/sessions/{session_id}")
    client.get("/sessions")  # a 405 is still a request to that route
    client.get("/nowhere")
    assert client.get("/_sim/stats").json()["requests"] == {
        "/health": 2,
        "/metrics": 1,
        "/status": 0,
        "/sessions": 2,
        "/sessions/count": 0,
        "/sessions/{id}": 2,
    }


def test_sim_reset(client: httpx.Client) -> None:
    create(client)
    set_fault(client, "all", "http500")
    assert client.post("/_sim/resources", json={"disk_percent": 99}).status_code == 200
    response = client.post("/_sim/reset")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert client.get("/_sim/stats").json() == FRESH_STATS
    metrics = client.get("/metrics").json()
    assert metrics["sessions"]["active"] == 0
    assert metrics["performance"]["total_requests"] == 1.0
    assert metrics["resources"]["disk_percent"] != 99.0
    assert client.get("/health").json()["status"] == "healthy"


def test_sim_resources_pins_figures(client: httpx.Client) -> None:
    response = client.post("/_sim/resources", json={"cpu_percent": 97.5, "memory_percent": 80})
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    resources = client.get("/metrics").json()["resources"]
    assert resources["cpu_percent"] == 97.5  # pinned beats the 10 s CPU warm-up
    assert resources["memory_percent"] == 80.0
    assert client.post("/_sim/resources", json={"cpu_percent": None}).status_code == 200
    assert client.get("/metrics").json()["resources"]["cpu_percent"] == 0.0


@pytest.mark.parametrize(
    "body", [{"cpu_percent": 101}, {"cpu_percent": "high"}, {"load": 1.0}, [1, 2]]
)
def test_sim_resources_bad_input_is_400(client: httpx.Client, body: Any) -> None:
    response = client.post("/_sim/resources", json=body)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


# Demo activity


def test_activity_moves_sessions_and_figures_within_bounds() -> None:
    clock = FakeClock()
    kato = SimulatedKato(clock=clock, seed=3)
    counts: list[int] = []
    memory: list[float] = []
    for _ in range(2000):
        clock.advance(2)
        kato.activity_step()
        counts.append(kato.active_count())
        memory.append(kato.resources()["memory_percent"])
    assert max(counts) <= 12
    assert min(counts) == 0 or max(counts) > 6
    assert len(set(counts)) > 5
    assert all(1.0 <= value <= 90.0 for value in memory)
    assert len(set(memory)) > 20


async def test_activity_task_stops_with_the_lifespan() -> None:
    kato = SimulatedKato(seed=5)
    app = create_simulator_app(kato, activity=True, activity_interval=0.001)
    before = asyncio.all_tasks()
    async with app.router.lifespan_context(app):
        (task,) = asyncio.all_tasks() - before
        assert not task.done()
    assert task.cancelled()


def test_activity_under_uvicorn(serve: Serve) -> None:
    client = serve(
        SimulatedKato(seed=7, metrics_cache_seconds=0), activity=True, activity_interval=0.01
    )
    first = client.get("/metrics").json()
    wait_until(lambda: active_sessions(client) > 0)
    wait_until(lambda: client.get("/metrics").json()["resources"] != first["resources"])


# Mode "serve": canned answers, for tests of hostile input


def test_fault_serve_json_patch_and_raw(client: httpx.Client) -> None:
    create(client)
    set_fault(client, "health", "serve", response={"json": [1, None]})
    assert client.get("/health").json() == [1, None]
    set_fault(client, "health", "serve", response={"patch": {"uptime_seconds": "soon"}})
    body = client.get("/health").json()
    assert body["uptime_seconds"] == "soon" and body["active_sessions"] == 1  # the rest is KATO's
    set_fault(client, "metrics", "serve", response={"patch": {"resources": {"cpu_percent": -1}}})
    resources = client.get("/metrics").json()["resources"]
    assert resources["cpu_percent"] == -1 and isinstance(resources["disk_percent"], float)
    set_fault(
        client,
        "metrics",
        "serve",
        response={"base64": "/w==", "content_type": "application/octet-stream", "status": 203},
    )
    response = client.get("/metrics")
    assert (response.status_code, response.content) == (203, b"\xff")
    assert response.headers["content-type"] == "application/octet-stream"


def test_fault_serve_nan_literals_and_huge_numbers(client: httpx.Client) -> None:
    document = {"a": math.nan, "b": 10**400}
    body = {"endpoint": "health", "mode": "serve", "response": {"json": document}}
    assert client.post("/_sim/fault", content=json.dumps(body)).status_code == 200
    text = client.get("/health").text
    assert text == '{"a": NaN, "b": 1' + "0" * 400 + "}"


def test_fault_serve_enormous_and_trickled_bodies(client: httpx.Client) -> None:
    set_fault(client, "health", "serve", response={"text": "x" * 1000, "repeat": 5000})
    assert len(client.get("/health").content) == 5_000_000
    set_fault(client, "health", "serve", response={"text": "{}", "trickle": 0.1, "chunk_size": 1})
    started = time.perf_counter()
    assert client.get("/health").content == b"{}"
    assert time.perf_counter() - started >= 0.2


@pytest.mark.parametrize(
    "response",
    [
        None,
        {},
        {"json": 1, "text": "x"},
        {"patch": [1]},
        {"text": 1},
        {"base64": "!!"},
        {"json": 1, "status": 99},
        {"json": 1, "repeat": 0},
        {"json": 1, "trickle": -1},
        {"json": 1, "content_type": 5},
    ],
)
def test_fault_serve_bad_input_is_400(client: httpx.Client, response: Any) -> None:
    body = {"endpoint": "health", "mode": "serve"}
    if response is not None:
        body["response"] = response
    answer = client.post("/_sim/fault", json=body)
    assert answer.status_code == 400, answer.text
    assert isinstance(answer.json()["error"], str)
