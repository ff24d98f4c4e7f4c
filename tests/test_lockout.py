"""Failed-token lockout: the sliding window itself, then the gateway process refusing an
address that guessed too often, on every channel a token is presented by."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sse_monitor.web.lockout import Lockout
from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import Kato

VIEWER = "viewer-token-5b1e8c0a2f7d4963"
ADMIN = "admin-token-0e6d3a9c7b158f24"
GUESSER, NEIGHBOUR = "198.51.100.7", "198.51.100.8"  # told apart by the trusted proxy's header


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_window_slides() -> None:
    clock = Clock()
    lockout = Lockout(3, 60, clock=clock)
    assert await lockout.record_failure("a") is False
    clock.now += 10
    assert await lockout.record_failure("a") is False
    assert lockout.retry_after("a") is None
    clock.now += 10
    assert await lockout.record_failure("a") is True  # the third within a minute
    assert lockout.retry_after("a") == 40  # when the first of them leaves the window
    assert lockout.retry_after("b") is None  # per address
    clock.now += 39.5
    assert lockout.retry_after("a") == 1
    clock.now += 0.5
    assert lockout.retry_after("a") is None  # two failures left in the window
    assert await lockout.record_failure("a") is True  # and one more locks again
    assert lockout.retry_after("a") == 10  # until the second leaves
    clock.now += 61
    assert lockout.retry_after("a") is None
    assert lockout._failures == {}  # nothing kept for an address that has served its time


async def test_memory_is_bounded_whatever_the_number_of_addresses() -> None:
    clock = Clock()
    lockout = Lockout(2, 60, max_addresses=100, clock=clock)
    for index in range(1000):
        await lockout.record_failure(f"10.0.{index // 256}.{index % 256}")
        if index in (880, 950):  # 119 addresses after the first: kept only as it moved
            await lockout.record_failure("kept")  # seen again recently: not forgotten
    assert len(lockout._failures) == 100
    assert lockout.retry_after("kept") is not None
    assert lockout.retry_after("10.0.0.0") is None  # the least recently seen were forgotten


@pytest.fixture
def gateway(kato: Kato) -> Iterator[GatewayProcess]:
    env = {
        "SSE_MONITOR_TOKEN": VIEWER,
        "SSE_MONITOR_ADMIN_TOKEN": ADMIN,
        "SSE_MONITOR_AUTH_FAILURE_LIMIT": "3",
        "SSE_MONITOR_AUTH_FAILURE_WINDOW": "60",
        "SSE_MONITOR_TRUSTED_PROXIES": "127.0.0.1",
    }
    with GatewayProcess(kato.url, env=env) as process:
        yield process


def get(
    gateway: GatewayProcess,
    path: str,
    client: str,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """GET as if from `client` (through the trusted proxy); a stream is only opened."""
    headers = {"X-Forwarded-For": client, **(headers or {})}
    with (
        httpx.Client(base_url=gateway.url, timeout=10, verify=tls()) as http,
        http.stream("GET", path, headers=headers, params=params) as response,
    ):
        if "text/event-stream" not in response.headers.get("content-type", ""):
            response.read()
        return response


def test_an_address_that_guesses_is_locked_out_on_every_channel(gateway: GatewayProcess) -> None:
    session = httpx.post(
        f"{gateway.url}/login",
        json={"token": VIEWER},
        headers={"X-Forwarded-For": GUESSER},
        verify=tls(),
    ).cookies
    wrong = {"Authorization": "Bearer not-the-token-00000000"}
    for _ in range(3):
        assert get(gateway, "/api/snapshot", GUESSER, headers=wrong).status_code == 401

    right = {"Authorization": f"Bearer {ADMIN}"}
    refusals = [
        get(gateway, "/api/snapshot", GUESSER, headers=right),  # even the right token
        get(gateway, "/events", GUESSER, params={"token": VIEWER}),
        httpx.post(
            f"{gateway.url}/login",
            json={"token": ADMIN},
            headers={"X-Forwarded-For": GUESSER},
            verify=tls(),
        ),
    ]
    for response in refusals:
        assert response.status_code == 429, response.request.url
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert "too many wrong tokens" in body["error"]
        wait = int(response.headers["Retry-After"])
        assert 1 <= wait <= 60 and body["retry_after_seconds"] == wait
        assert ADMIN not in response.text and VIEWER not in response.text
        assert "set-cookie" not in response.headers

    # A cookie from before is a proof, not a guess: it still reads. Other addresses are not
    # concerned.
    with httpx.Client(base_url=gateway.url, cookies=session, verify=tls()) as http:
        reading = http.get("/api/snapshot", headers={"X-Forwarded-For": GUESSER})
        assert reading.status_code == 200
    assert get(gateway, "/api/snapshot", NEIGHBOUR, headers=right).status_code == 200

    metrics = get(gateway, "/metrics", NEIGHBOUR, headers=right).text
    [family] = [
        f
        for f in text_string_to_metric_families(metrics)
        if f.name == "sse_monitor_connections_refused"
    ]
    refused = {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert refused["locked_out"] == 3 and refused["unauthorized"] == 3

    lines = [json.loads(line) for line in gateway.log().splitlines() if "access.locked_out" in line]
    assert [(line["client"], line["failures"]) for line in lines] == [(GUESSER, 3)]
    assert ADMIN not in gateway.log() and VIEWER not in gateway.log()


def test_the_lockout_ends_with_its_window(kato: Kato) -> None:
    env = {
        "SSE_MONITOR_TOKEN": VIEWER,
        "SSE_MONITOR_AUTH_FAILURE_LIMIT": "2",
        "SSE_MONITOR_AUTH_FAILURE_WINDOW": "2",
    }
    with GatewayProcess(kato.url, env=env) as gateway:
        first = time.monotonic()
        for token in ("wrong-token-000000001", "wrong-token-000000002"):
            wrong = httpx.post(f"{gateway.url}/login", json={"token": token}, verify=tls())
            assert wrong.status_code == 401
        locked = httpx.post(f"{gateway.url}/login", json={"token": VIEWER}, verify=tls())
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) <= 2
        deadline = time.monotonic() + 10
        while (
            answer := httpx.post(f"{gateway.url}/login", json={"token": VIEWER}, verify=tls())
        ).status_code == 429:
            assert time.monotonic() < deadline, "still locked out long after the window"
            time.sleep(0.1)  # polling for the window's end, which is what is under test
        assert answer.status_code == 200 and answer.json() == {"role": "admin"}
        assert time.monotonic() - first >= 2 - 0.2  # not before the window had passed
