"""The Redis history store's own promises, on a real redis-server: every key under the cluster's
prefix; a producer whose lease is gone writes nothing (the fence); and a Redis that does not
answer costs a tick nothing (its ticks are dropped and counted, one warning per outage), makes
the reads a StoreUnavailable within the timeout (a 503 JSON from the API), and recording
resumes by itself when it is back. What it shares with the SQLite store is tested on both in
test_history_store.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from starlette.applications import Starlette
from structlog.testing import capture_logs

from sse_monitor.alerts.store import StoreUnavailable
from sse_monitor.cluster.lease import Lease
from sse_monitor.history.markers import Marker
from sse_monitor.history.redis_store import RedisHistory
from sse_monitor.web.errors import EXCEPTION_HANDLERS
from sse_monitor.web.history_api import history_routes
from tests.support.history_stores import PREFIX, HistoryStores
from tests.support.redis_server import RedisServerProcess, missing_redis, paused
from tests.support.servers import ThreadedServer, open_access

CPU = "kato.cpu_percent"
START = 1_795_999_500.0  # a 15-minute boundary
TIMEOUT = 0.5  # the store's bound in the tests of a Redis that does not answer
LATE = 1.5  # seconds past TIMEOUT that a loaded machine may add before the error is raised
UNAVAILABLE = r"the history in Redis \(test-cluster:history:\*\) failed"


def redis_history(stores: HistoryStores, prefix: str = PREFIX) -> RedisHistory:
    """A store with the short TIMEOUT, on a client of `stores`' Redis (opened by the caller)."""
    return RedisHistory(stores.client(), prefix, timeout=TIMEOUT)


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[HistoryStores]:
    async with HistoryStores("redis", redis_url) as stores:
        yield stores


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A redis-server of this test's own that keeps its data across a restart (AOF)."""
    reason = missing_redis()
    if reason:
        pytest.skip(f"no Redis: {reason}")
    with RedisServerProcess(tmp_path, persistent=True) as server:
        yield server


async def times(store: RedisHistory, since: float = START, until: float = START + 3600) -> list:
    """The times of CPU's points kept."""
    return [row[0] for row in (await store.points([CPU], since, until, 0))[CPU]]


def logged(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


def errors(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["log_level"] in ("error", "critical")]


async def test_every_key_is_under_the_prefix_and_clusters_do_not_meet(
    nodes: HistoryStores,
) -> None:
    blue, green = await nodes.opened(prefix="blue"), await nodes.opened(prefix="green")
    marker = Marker(START + 1, "session_created", {"count": 1, "delta": 1})
    for n in range(30):  # a minute and a half: the first minute is folded
        blue.record(START + 3 * n, {CPU: float(n), "sessions.active": None})
    blue.record(marker.time, {}, [marker])
    green.record(START, {"kato.memory_percent": 5.0})
    await blue.flush()
    await green.flush()
    keys = {key.decode() for key in await nodes.clients[0].keys("*")}
    assert keys == {
        "blue:history:series",
        "blue:history:markers",
        f"blue:history:0:{CPU}",
        "blue:history:0:sessions.active",
        f"blue:history:60:{CPU}",  # sessions.active had only gaps: no bucket
        "blue:history:folded:60",
        "blue:history:folded:900",  # where it starts: nothing to fold before
        "green:history:series",
        "green:history:0:kato.memory_percent",
        "green:history:folded:60",
        "green:history:folded:900",
    }
    assert await blue.series() == [CPU, "sessions.active"]
    assert await green.series() == ["kato.memory_percent"]
    assert await green.markers(START, START + 60, 10) == []
    assert await blue.markers(START, START + 60, 10) == [marker]


async def test_a_producer_whose_lease_is_gone_writes_nothing(nodes: HistoryStores) -> None:
    store = await nodes.opened()
    assert isinstance(store, RedisHistory)
    lease = Lease(nodes.client(), prefix=PREFIX, node="a", ttl=60)
    old = await lease.acquire()
    assert old is not None
    store.writer(old).record(START, {CPU: 1.0})
    await store.flush()
    assert await times(store) == [START]

    # Another node took the lease (ours lapsed while we were paused): we still believe we lead.
    await lease.release(old)
    new = await lease.acquire()
    assert new is not None and new != old
    stale = store.writer(old)
    with capture_logs() as logs:
        stale.record(START + 3, {CPU: 2.0})
        stale.record(START + 4, {}, [Marker(START + 4, "session_created", {"count": 2})])
        await store.flush()
    assert await times(store) == [START]
    assert await store.markers(START, START + 60, 10) == []
    assert store.refused == 2 and store.write_failures == 0
    assert [entry["log_level"] for entry in logged(logs, "history.write_fenced")] == ["warning"]

    store.writer(new).record(START + 6, {CPU: 3.0})
    await store.flush()
    assert await times(store) == [START, START + 6]


async def test_a_client_that_decodes_answers_reads_the_same(redis_url: str) -> None:
    """The app's client may decode answers to text (decode_responses) or not."""
    async with (
        HistoryStores("redis", redis_url, decode_responses=True) as texts,
        HistoryStores("redis", redis_url) as binaries,
    ):
        text, binary = await texts.opened(), await binaries.opened()
        marker = Marker(START + 1, "alert_fired", {"message": "é ✓"})
        for n in range(30):
            text.record(START + 3 * n, {CPU: n / 3}, [marker] if n == 1 else [])
        await text.flush()
        for step in (0, 60):
            assert await text.points([CPU], START, START + 90, step) == await binary.points(
                [CPU], START, START + 90, step
            )
        assert await text.markers(START, START + 90, 10) == [marker]
        assert await binary.markers(START, START + 90, 10) == [marker]
        assert await text.series() == await binary.series() == [CPU]


@asynccontextmanager
async def recording(url: str) -> AsyncIterator[RedisHistory]:
    """A store with the short TIMEOUT on the Redis at `url`, open, START's tick written."""
    async with HistoryStores("redis", url) as stores:
        store = redis_history(stores)
        await store.open()
        store.record(START, {CPU: 1.0})
        await store.flush()
        yield store


async def test_a_paused_redis_never_holds_a_tick_and_reads_fail_within_the_timeout(
    own_redis: RedisServerProcess,
) -> None:
    async with recording(own_redis.url) as store:
        with paused(own_redis):
            for n in range(1, 4):  # the first waits for Redis; the others queue behind it
                started = time.monotonic()
                store.record(START + 3 * n, {CPU: float(n)})
                assert time.monotonic() - started < 0.05
            started = time.monotonic()
            for read in (
                store.points([CPU], START, START + 60, 0),
                store.markers(START, START + 60, 10),
                store.series(),
            ):
                with pytest.raises(StoreUnavailable, match=UNAVAILABLE):
                    await read
            await store.flush()  # dropped, not kept waiting
            assert time.monotonic() - started < 4 * (TIMEOUT + LATE)
            assert store.write_failures == 3 and not store.writing
        # (Redis may still run a write it read before the pause: a timeout is no refusal.)
        store.record(START + 12, {CPU: 4.0})
        await store.flush()
        assert store.writing and START + 12 in await times(store)


async def test_a_restarted_redis_gets_the_ticks_again_without_help(
    persistent_redis: RedisServerProcess,
) -> None:
    async with recording(persistent_redis.url) as store:
        with capture_logs() as logs:
            await asyncio.to_thread(persistent_redis.stop)
            for n in range(1, 4):
                store.record(START + 3 * n, {CPU: float(n)})
                await store.flush()
            assert store.write_failures == 3
            with pytest.raises(StoreUnavailable, match=UNAVAILABLE):
                await store.series()
            await asyncio.to_thread(persistent_redis.start)  # with its data
            store.record(START + 12, {CPU: 4.0})
            await store.flush()
        assert await times(store) == [START, START + 12]
        assert store.writing and store.write_failures == 3
        assert [entry["log_level"] for entry in logged(logs, "history.not_writing")] == ["warning"]
        assert [entry["log_level"] for entry in logged(logs, "history.writing")] == ["info"]
        assert errors(logs) == []


@asynccontextmanager
async def history_api(url: str) -> AsyncIterator[str]:
    """The history routes of a cluster's node whose store is the Redis at `url`, served on
    loopback: the base URL. The app makes its client and store, in its server's loop."""
    client = redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    store = RedisHistory(client, PREFIX, timeout=TIMEOUT)
    access = open_access()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        store.record(time.time() - 10, {CPU: 1.0})
        await store.flush()
        yield
        await store.aclose()
        await client.aclose()

    app = Starlette(
        routes=history_routes(store, access, interval=3),
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    with ThreadedServer(app) as server:
        yield server.url


async def test_the_api_answers_503_json_while_redis_does_not_answer(
    own_redis: RedisServerProcess,
) -> None:
    async with (
        history_api(own_redis.url) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        found = await http.get("/api/history", params={"series": CPU})
        assert found.status_code == 200 and len(found.json()["series"][CPU]) == 1, found.text
        with paused(own_redis), capture_logs() as logs:
            for path in ("/api/history", f"/api/history?series={CPU}", "/api/history/series"):
                started = time.monotonic()
                answer = await http.get(path)
                assert time.monotonic() - started < TIMEOUT + LATE, path
                assert answer.status_code == 503, (path, answer.text)
                assert answer.headers["retry-after"] == "5"
                assert answer.json()["status"] == 503
                assert "test-cluster:history" in answer.json()["error"]
        assert errors(logs) == []
        assert (await http.get("/api/history/series")).json()["series"] == [CPU]
