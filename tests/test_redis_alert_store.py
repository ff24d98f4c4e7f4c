"""The Redis alert store's own promises, on a real redis-server: every key under the cluster's
prefix, an ack made on one node kept by the producer's next save, and a Redis that does not
answer is a StoreUnavailable within the client's timeout (a 503 from the API), never a hang.
What it shares with the SQLite store is tested on both in test_alert_store.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette

from sse_monitor.alerts.alert import Alert, stamp
from sse_monitor.alerts.redis_store import RedisAlertStore
from sse_monitor.alerts.store import AlertStorage, StoreUnavailable
from sse_monitor.bus.memory import MemoryLog
from sse_monitor.cluster.acks import ClusterAcks
from sse_monitor.web.alert_api import alert_routes
from sse_monitor.web.errors import EXCEPTION_HANDLERS
from tests.support.alert_stores import NOW, PREFIX, AlertStores, alert
from tests.support.redis_server import RedisServerProcess, paused
from tests.support.servers import ThreadedServer, open_access

TIMEOUT = 0.5  # the clients' socket timeout in the tests of a Redis that does not answer
RETRIES = 10  # redis-py's own retries, each up to TIMEOUT: the store's bound must still hold
LATE = 1.5  # seconds past TIMEOUT that a loaded machine may add before the error is raised
UNANSWERED_CLIENT = {
    "socket_timeout": TIMEOUT,
    "socket_connect_timeout": TIMEOUT,
    "retry": Retry(NoBackoff(), RETRIES),
}
UNAVAILABLE = r"the alert store redis://127\.0\.0\.1:\d+/0 test-cluster:alerts:\* "


def fired(alert_id: str, *, started: timedelta = timedelta(0)) -> Alert:
    return alert(alert_id, state="firing", started=started, resolved=None)


SAVED = fired("00000000000000e1")


def resolved(firing: Alert) -> Alert:
    return replace(firing, state="resolved", resolved_at=stamp(NOW), resolved_value="healthy")


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[AlertStores]:
    async with AlertStores("redis", redis_url) as stores:
        yield stores


@pytest.fixture
async def unanswered(own_redis: RedisServerProcess) -> AsyncIterator[AlertStorage]:
    """A store holding SAVED, on a Redis of the test's own, whose client retries and times out
    as a node's may."""
    async with AlertStores("redis", own_redis.url, **UNANSWERED_CLIENT) as stores:
        store = await stores.opened()
        await store.save([SAVED])
        yield store


def every_call(store: AlertStorage) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "save": lambda: store.save([SAVED]),
        "firing": store.firing,
        "get": lambda: store.get(SAVED.id),
        "acknowledge": lambda: store.acknowledge(SAVED.id, "dan", None, NOW),
        "page": lambda: store.page(state=None, severity=None, limit=10, before=None),
        "prune": lambda: store.prune(NOW),
    }


async def assert_each_call_is_unavailable_in_time(store: AlertStorage) -> None:
    for name, call in every_call(store).items():
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=UNAVAILABLE):
            await call()
        took = time.monotonic() - started
        assert took < TIMEOUT + LATE, f"{name} took {took:.2f} s"


async def test_a_save_keeps_an_ack_made_on_another_node(nodes: AlertStores) -> None:
    producer, edge = await nodes.opened(), await nodes.opened()
    target = fired("00000000000000a1")
    await producer.save([target])
    found = await edge.acknowledge(target.id, "carol", "looking", NOW)
    assert found is not None and found[1]

    # The producer's copy has no ack: it resolves the alert and saves that copy.
    await producer.save([resolved(target)])
    stored = await edge.get(target.id)
    assert stored is not None
    assert (stored.state, stored.resolved_value) == ("resolved", "healthy")
    assert (stored.acknowledged_by, stored.acknowledged_at, stored.ack_note) == (
        "carol",
        stamp(NOW),
        "looking",
    )

    # A copy with another ack does not replace the first one either...
    await producer.save([replace(stored, acknowledged_by="mallory", ack_note=None)])
    assert await edge.get(target.id) == stored
    # ...but an ack the store has not got (a Redis restarted empty) is kept from the copy.
    again = replace(fired("00000000000000a2"), acknowledged_by="dan", acknowledged_at=stamp(NOW))
    await producer.save([again])
    assert await edge.get(again.id) == again


async def test_every_key_is_under_the_prefix_and_clusters_do_not_meet(nodes: AlertStores) -> None:
    blue, green = await nodes.opened("blue"), await nodes.opened("green")
    first, second = fired("00000000000000b1", started=timedelta(hours=1)), fired("00000000000000b2")
    await blue.save([resolved(first), second])
    await blue.acknowledge(second.id, "dan", None, NOW)
    await green.save([fired("00000000000000b3")])
    assert await green.get(first.id) is None
    assert [a.id for a in await green.page(state=None, severity=None, limit=10, before=None)] == [
        "00000000000000b3"
    ]
    assert [a.id for a in await blue.page(state=None, severity=None, limit=10, before=None)] == [
        second.id,
        first.id,
    ]
    keys = {key.decode() for key in await nodes.clients[0].keys("*")}
    assert f"blue:alerts:alert:{first.id}" in keys and "green:alerts:resolved" not in keys
    assert all(key.startswith(("blue:alerts:", "green:alerts:")) for key in keys), keys


async def test_a_client_that_decodes_answers_reads_the_same(redis_url: str) -> None:
    """The app's client may decode answers to text (decode_responses) or not."""
    async with (
        AlertStores("redis", redis_url, decode_responses=True) as texts,
        AlertStores("redis", redis_url) as binaries,
    ):
        text, binary = await texts.opened(), await binaries.opened()
        await binary.save([SAVED, resolved(fired("00000000000000a3"))])
        found = await text.acknowledge(SAVED.id, "dan", "é ✓", NOW)
        assert found is not None and found[1]
        assert await binary.get(SAVED.id) == found[0] == await text.get(SAVED.id)
        assert await text.firing() == await binary.firing() == [found[0]]
        everything = await text.page(state=None, severity=None, limit=10, before=None)
        assert everything == await binary.page(state=None, severity=None, limit=10, before=None)
        assert len(everything) == 2


async def test_a_stopped_redis_is_unavailable_and_a_restarted_one_serves_again(
    own_redis: RedisServerProcess, unanswered: AlertStorage
) -> None:
    await asyncio.to_thread(own_redis.stop)
    await unanswered.open()  # as a node starting meanwhile does: no call to Redis
    await assert_each_call_is_unavailable_in_time(unanswered)

    await asyncio.to_thread(own_redis.start)  # empty, and without the scripts the store loaded
    fresh = fired("00000000000000e2")
    await unanswered.save([fresh])
    assert await unanswered.get(fresh.id) == fresh
    assert await unanswered.get(SAVED.id) is None


async def test_a_redis_restarted_between_two_calls_is_no_outage(
    own_redis: RedisServerProcess,
) -> None:
    """The client's connections from before the restart are closed: the first call after it
    fails on one of them, and goes again on a new one (the client, as a node's, does not)."""
    async with AlertStores("redis", own_redis.url) as stores:
        store = await stores.opened()
        await asyncio.gather(store.get(SAVED.id), store.firing())  # two pooled connections
        await asyncio.to_thread(own_redis.stop)
        await asyncio.to_thread(own_redis.start)
        await store.save([SAVED])
        assert await store.get(SAVED.id) == SAVED


async def test_a_paused_redis_is_unavailable_within_the_timeout(
    own_redis: RedisServerProcess, unanswered: AlertStorage
) -> None:
    with paused(own_redis):
        await assert_each_call_is_unavailable_in_time(unanswered)
    assert await unanswered.get(SAVED.id) == SAVED


@asynccontextmanager
async def alert_api(url: str) -> AsyncIterator[str]:
    """The alert routes of a cluster's node whose store is the Redis at `url`, served on
    loopback: the base URL. The app makes its client and closes it, in its server's loop."""
    client = redis.from_url(url, **UNANSWERED_CLIENT)
    store = RedisAlertStore(client, prefix=PREFIX)
    access = open_access()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = Starlette(
        routes=alert_routes(
            store,
            ClusterAcks(store, MemoryLog(history_size=10), history_size=10).acknowledge,
            access,
        ),
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    with ThreadedServer(app) as server:
        yield server.url


async def test_the_api_answers_503_while_the_store_does_not_answer(
    own_redis: RedisServerProcess, unanswered: AlertStorage
) -> None:
    async with (
        alert_api(own_redis.url) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        listed = await http.get("/api/alerts")
        assert [a["id"] for a in listed.json()["alerts"]] == [SAVED.id]
        with paused(own_redis):
            for method, path, body in (
                ("GET", "/api/alerts", None),
                ("GET", f"/api/alerts?before={SAVED.id}", None),
                ("POST", f"/api/alerts/{SAVED.id}/ack", {"by": "dan"}),
            ):
                started = time.monotonic()
                answer = await http.request(method, path, json=body)
                assert time.monotonic() - started < TIMEOUT + LATE, path
                assert answer.status_code == 503, (path, answer.text)
                assert answer.headers["retry-after"] == "5"
                assert answer.json()["status"] == 503
                assert "test-cluster:alerts" in answer.json()["error"]
        acked = await http.post(f"/api/alerts/{SAVED.id}/ack", json={"by": "dan"})
        assert (acked.status_code, acked.json()["acknowledged_by"]) == (200, "dan")
