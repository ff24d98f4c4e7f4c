"""The simulated KATO's push side, for real: /ws/events per worker, Redis mode, its controls.

Every test runs the app under uvicorn on loopback and talks to it with a real WebSocket client;
the Redis tests use a real redis-server. Nothing waits by sleeping: "no message came" is shown
by the next message being a later one (a `pong`, or the next event), since one socket's messages
are sent in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sse_monitor.simulator.app import create_simulator_app
from sse_monitor.simulator.redis_layout import ACTIVE_INDEX_KEY, SESSION_KEY_PREFIX
from sse_monitor.simulator.state import SimulatedKato
from sse_monitor.simulator.workers import WORKER_HEADER
from tests.support.kato import SESSION_FIELDS
from tests.support.processes import free_port
from tests.support.servers import ThreadedServer

START = 1_795_610_000.0
NAIVE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
TIMEOUT = 5.0

Serve = Callable[..., str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start simulators under uvicorn on demand; each call returns one's base URL."""
    with contextlib.ExitStack() as stack:

        def start(kato: SimulatedKato, **options: Any) -> str:
            app = create_simulator_app(kato, **options)
            return stack.enter_context(ThreadedServer(app)).url

        yield start


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test's (empty) Redis, to read what the simulator wrote there."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


@pytest.fixture
def writing(serve: Serve, redis_url: str) -> str:
    """A simulator in Redis session mode that writes its sessions into the test's Redis, as KATO
    does: its URL."""
    return serve(SimulatedKato(session_backend="redis", redis_url=redis_url))


@contextlib.asynccontextmanager
async def socket(url: str, worker: int | None = None) -> AsyncIterator[ClientConnection]:
    headers = {} if worker is None else {WORKER_HEADER: str(worker)}
    ws_url = url.replace("http://", "ws://") + "/ws/events"
    async with connect(ws_url, additional_headers=headers, open_timeout=TIMEOUT) as ws:
        yield ws


async def receive(ws: ClientConnection) -> Any:
    """The next message: parsed JSON, or the bare text (`pong`)."""
    text = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(text, str)
    return text if text == "pong" else json.loads(text)


async def snapshot(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = await receive(ws)
    assert message["event_type"] == "state.snapshot"
    return message


async def assert_quiet(ws: ClientConnection) -> None:
    """Nothing is queued for this socket: a ping's answer comes next."""
    await ws.send("ping")
    assert await receive(ws) == "pong"


async def create(http: httpx.AsyncClient, worker: int | None = None, **fields: Any) -> str:
    headers = {} if worker is None else {WORKER_HEADER: str(worker)}
    body = {"node_id": "push", **fields}
    response = await http.post("/sessions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    session_id: str = response.json()["session_id"]
    return session_id


async def delete(http: httpx.AsyncClient, session_id: str, worker: int | None = None) -> None:
    headers = {} if worker is None else {WORKER_HEADER: str(worker)}
    response = await http.delete(f"/sessions/{session_id}", headers=headers)
    assert response.status_code == 200, response.text


async def stats(http: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await http.get("/_sim/stats")).json()
    return body


async def push_mode(http: httpx.AsyncClient, mode: str) -> dict[str, Any]:
    response = await http.post("/_sim/push", json={"mode": mode})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_stats(http: httpx.AsyncClient, key: str, expected: Any) -> None:
    """The server notices a client's close on its own time: look until it has, within TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while (await stats(http))[key] != expected:
        assert time.monotonic() < deadline, f"{key} never became {expected!r}"
        await asyncio.sleep(0.01)


def http_client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=TIMEOUT)


# The socket itself


async def test_snapshot_on_connect(serve: Serve) -> None:
    url = serve(SimulatedKato(clock=lambda: START))
    async with http_client(url) as http:
        await create(http)
        async with socket(url) as ws:
            message = await receive(ws)
    assert message == {
        "event_type": "state.snapshot",
        "timestamp": message["timestamp"],
        "data": {"active_sessions": 1, "system_status": "healthy"},
    }
    assert NAIVE.match(message["timestamp"])  # no offset, as KATO's datetime.now()
    stamp = datetime.fromisoformat(message["timestamp"]).replace(tzinfo=UTC)
    assert stamp.timestamp() == START


async def test_ping_gets_pong(serve: Serve) -> None:
    url = serve(SimulatedKato())
    async with socket(url) as ws:
        await snapshot(ws)
        await ws.send("hello")  # anything else is ignored
        await ws.send(b"ping")
        await ws.send("ping")
        assert await receive(ws) == "pong"
        await ws.send("ping")
        assert await receive(ws) == "pong"


async def test_session_events_reach_the_serving_workers_sockets_only(serve: Serve) -> None:
    url = serve(SimulatedKato(workers=2, session_backend="redis"))
    async with http_client(url) as http, socket(url) as first, socket(url) as second:
        await snapshot(first)
        await snapshot(second)  # sockets are dealt round robin: worker 0, then worker 1
        assert (await stats(http))["websockets_by_worker"] == [1, 1]

        response = await http.post(
            "/sessions", json={"node_id": "ws"}, headers={WORKER_HEADER: "1"}
        )
        session = response.json()
        created = await receive(second)
        assert created == {
            "event_type": "session.created",
            "timestamp": created["timestamp"],
            "data": {
                "session_id": session["session_id"],
                "node_id": "ws",
                "created_at": created["data"]["created_at"],
            },
        }
        assert created["timestamp"].endswith("+00:00")
        assert datetime.fromisoformat(created["data"]["created_at"]) == datetime.fromisoformat(
            session["created_at"]
        )
        await assert_quiet(first)

        await delete(http, session["session_id"], worker=0)
        destroyed = await receive(first)
        assert destroyed == {
            "event_type": "session.destroyed",
            "timestamp": destroyed["timestamp"],
            "data": {
                "session_id": session["session_id"],
                "destroyed_at": destroyed["data"]["destroyed_at"],
                "reason": "explicit_delete",
            },
        }
        assert destroyed["timestamp"].endswith("+00:00")
        assert destroyed["data"]["destroyed_at"].endswith("+00:00")
        await assert_quiet(second)
        assert (await stats(http))["pushed"] == 2


async def test_round_robin_deals_sockets_and_requests_alike(serve: Serve) -> None:
    url = serve(SimulatedKato(workers=2, session_backend="redis"))
    async with http_client(url) as http, socket(url) as on_zero, socket(url) as on_one:
        await snapshot(on_zero)
        await snapshot(on_one)
        first = await create(http)  # round robin again: worker 0 serves it
        second = await create(http)  # and worker 1 this one
        assert (await receive(on_zero))["data"]["session_id"] == first
        assert (await receive(on_one))["data"]["session_id"] == second


async def test_memory_mode_pushes_nothing(serve: Serve) -> None:
    url = serve(SimulatedKato())
    async with http_client(url) as http, socket(url) as ws:
        await snapshot(ws)
        session_id = await create(http)
        await delete(http, session_id)
        await assert_quiet(ws)
        assert (await stats(http))["pushed"] == 0


async def test_expiry_pushes_nothing_and_stays_counted(serve: Serve) -> None:
    url = serve(SimulatedKato(session_backend="redis", metrics_cache_seconds=0))
    async with http_client(url) as http, socket(url) as ws:
        await snapshot(ws)
        expiring = await create(http)
        kept = await create(http)
        assert (await receive(ws))["data"]["session_id"] == expiring
        assert (await receive(ws))["data"]["session_id"] == kept

        response = await http.post("/_sim/expire", json={"session_id": expiring})
        assert response.json() == {"ok": True}
        assert (await http.get(f"/sessions/{expiring}")).status_code == 404
        assert (await http.get("/sessions/count")).json() == {"active_session_count": 2}

        await delete(http, kept)
        destroyed = await receive(ws)  # the next message: nothing came for the expiry
        assert destroyed["data"]["session_id"] == kept
        # KATO's quirk: the expired id stays in the index, so it is counted for ever
        assert (await http.get("/sessions/count")).json() == {"active_session_count": 1}
        assert (await http.get("/health")).json()["active_sessions"] == 1
        assert (await http.get("/metrics")).json()["sessions"]["active"] == 1
        delete_expired = await http.delete(f"/sessions/{expiring}")
        assert delete_expired.json()["error"]["code"] == "SESSION_NOT_FOUND"
        async with socket(url) as late:
            assert (await snapshot(late))["data"]["active_sessions"] == 1


async def test_demo_activity_pushes(serve: Serve) -> None:
    kato = SimulatedKato(session_backend="redis", seed=11)
    url = serve(kato, activity=True, activity_interval=0.01)
    async with socket(url) as ws:
        await snapshot(ws)
        message = await receive(ws)
    assert message["event_type"] in ("session.created", "session.destroyed")


# KATO's keys in a real Redis


def session_key(session_id: str) -> str:
    return f"{SESSION_KEY_PREFIX}{session_id}"


async def test_redis_keys_in_katos_layout(writing: str, store: redis.Redis) -> None:
    async with http_client(writing) as http, socket(writing) as ws:
        await snapshot(ws)
        body = {"node_id": "dash", "ttl_seconds": 120, "metadata": {"who": "test"}}
        session = (await http.post("/sessions", json=body)).json()
        session_id = session["session_id"]
        await receive(ws)
        key = session_key(session_id)
        # The push comes after the write, as in KATO: the key is there when the event is
        assert store.exists(key) == 1

    assert set(store.keys("*")) == {key, ACTIVE_INDEX_KEY}
    stored = json.loads(store.get(key))
    assert list(stored) == SESSION_FIELDS
    assert stored == session  # the POST answer, Z-suffixed times included
    assert stored["expires_at"].endswith("Z")
    assert 110 <= store.ttl(key) <= 120
    assert store.type(ACTIVE_INDEX_KEY) == "set"
    assert store.smembers(ACTIVE_INDEX_KEY) == {session_id}
    assert store.scard(ACTIVE_INDEX_KEY) == 1


async def test_redis_delete_removes_key_and_index_entry(writing: str, store: redis.Redis) -> None:
    async with http_client(writing) as http:
        gone = await create(http)
        kept = await create(http)
        await delete(http, gone)
    assert store.exists(session_key(gone)) == 0
    assert store.exists(session_key(kept)) == 1
    assert store.smembers(ACTIVE_INDEX_KEY) == {kept}


async def test_redis_expiry_removes_the_key_but_not_the_index_entry(
    serve: Serve, redis_url: str, store: redis.Redis
) -> None:
    kato = SimulatedKato(session_backend="redis", redis_url=redis_url, metrics_cache_seconds=0)
    url = serve(kato)
    async with http_client(url) as http:
        session_id = await create(http)
        assert (await http.post("/_sim/expire", json={"session_id": session_id})).status_code == 200
        assert store.exists(session_key(session_id)) == 0
        assert store.scard(ACTIVE_INDEX_KEY) == 1
        assert (await http.get("/sessions/count")).json() == {"active_session_count": 1}
        assert (await http.delete(f"/sessions/{session_id}")).status_code == 404
        assert store.scard(ACTIVE_INDEX_KEY) == 1


async def test_redis_get_slides_the_keys_ttl(writing: str, store: redis.Redis) -> None:
    async with http_client(writing) as http:
        session_id = await create(http, ttl_seconds=300)
        key = session_key(session_id)
        before = store.get(key)
        store.expire(key, 10)  # as if 290 s had gone by
        assert (await http.get(f"/sessions/{session_id}")).status_code == 200
    assert store.ttl(key) > 250
    assert store.get(key) == before  # KATO slides with EXPIRE: the JSON is left as it was


async def test_redis_reset_clears_katos_keys(writing: str, store: redis.Redis) -> None:
    store.set("someone-else", "kept")
    async with http_client(writing) as http:
        await create(http)
        assert (await http.post("/_sim/reset")).status_code == 200
    assert store.keys("*") == ["someone-else"]


async def test_unreachable_redis_stops_the_start() -> None:
    kato = SimulatedKato(session_backend="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = create_simulator_app(kato)
    with pytest.raises(redis.ConnectionError):
        async with app.router.lifespan_context(app):
            pass


# Controls


async def test_push_refuse_then_on(serve: Serve) -> None:
    url = serve(SimulatedKato())
    async with http_client(url) as http, socket(url) as open_before:
        await snapshot(open_before)
        assert await push_mode(http, "refuse") == {"ok": True, "dropped": 0}
        with pytest.raises(InvalidStatus) as refused:
            async with socket(url):
                pass
        assert refused.value.response.status_code == 403
        await assert_quiet(open_before)  # open sockets are left alone
        await push_mode(http, "on")
        async with socket(url) as again:
            await snapshot(again)


async def test_push_drop_closes_every_socket_and_stays_on(serve: Serve) -> None:
    url = serve(SimulatedKato(workers=2))
    async with http_client(url) as http, socket(url) as first, socket(url) as second:
        await snapshot(first)
        await snapshot(second)
        assert await push_mode(http, "drop") == {"ok": True, "dropped": 2}
        for ws in (first, second):
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert (await stats(http))["websockets"] == 0
        async with socket(url) as reconnected:
            await snapshot(reconnected)


async def test_push_refuse_then_drop_keeps_refusing(serve: Serve) -> None:
    url = serve(SimulatedKato())
    async with http_client(url) as http, socket(url) as ws:
        await snapshot(ws)
        await push_mode(http, "refuse")
        assert (await push_mode(http, "drop"))["dropped"] == 1
        with pytest.raises(ConnectionClosed):
            await receive(ws)
        with pytest.raises(InvalidStatus):
            async with socket(url):
                pass


@pytest.mark.parametrize("body", [{"mode": "off"}, {}, ["on"]])
async def test_push_bad_mode_is_400(serve: Serve, body: Any) -> None:
    url = serve(SimulatedKato())
    async with http_client(url) as http:
        response = await http.post("/_sim/push", json=body)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


async def test_stats_count_sockets_and_pushes(serve: Serve) -> None:
    url = serve(SimulatedKato(workers=2, session_backend="redis"))
    async with http_client(url) as http:
        async with socket(url, 0) as a, socket(url, 0) as b, socket(url, 1) as c:
            for ws in (a, b, c):
                await snapshot(ws)
            counts = await stats(http)
            assert counts["websockets"] == 3
            assert counts["websockets_by_worker"] == [2, 1]
            await create(http, worker=0)  # two sockets hear it
            await create(http, worker=1)  # one does
            for ws in (a, b, c):
                await receive(ws)
            assert (await stats(http))["pushed"] == 3
            assert (await http.post("/_sim/reset")).status_code == 200
            after_reset = await stats(http)
            assert after_reset["pushed"] == 0
            assert after_reset["websockets"] == 3  # a reset leaves connections open
        await wait_for_stats(http, "websockets", 0)


async def test_worker_header_must_name_a_worker(serve: Serve) -> None:
    url = serve(SimulatedKato(workers=2))
    async with http_client(url) as http:
        for value in ("2", "-1", "one"):
            response = await http.get("/health", headers={WORKER_HEADER: value})
            assert response.status_code == 400
            assert "0 to 1" in response.json()["error"]
        assert (await stats(http))["requests"]["/health"] == 0
    with pytest.raises(InvalidStatus):
        async with socket(url, worker=2):
            pass


async def test_worker_header_picks_the_worker(serve: Serve) -> None:
    url = serve(SimulatedKato(workers=2, metrics_cache_seconds=0))
    async with http_client(url) as http:
        totals = []
        for _ in range(3):
            response = await http.get("/metrics", headers={WORKER_HEADER: "1"})
            totals.append(response.json()["performance"]["total_requests"])
        first_turn = (await http.get("/metrics")).json()["performance"]["total_requests"]
    assert totals == [1.0, 2.0, 3.0]
    assert first_turn == 1.0  # the round robin did not move: worker 0 serves next


def test_backend_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="session_backend"):
        SimulatedKato(session_backend="postgres")
    with pytest.raises(ValueError, match="redis_url"):
        SimulatedKato(redis_url="redis://127.0.0.1:6379/0")
