"""The history stores on real backends, a SQLite file (sse_monitor/history/sqlite_store.py) and
a redis-server on loopback (redis_store.py): what was recorded reads back; the buckets each
folds equal the ones history/buckets.py folds from the same points; retention deletes on
schedule; a store opened again on the same backend keeps it all. Then SQLite's own: every
statement runs in the store's thread. Redis's own (its keys, fencing, a Redis that does not
answer) are in test_redis_history.py."""

from __future__ import annotations

import math
import random
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sse_monitor.history.buckets import TIERS, Bucket, Tier, downsample, merge
from sse_monitor.history.markers import Marker
from sse_monitor.history.sqlite_store import MAX_PENDING, SCHEMA, SqliteHistory
from sse_monitor.history.store import HistoryStore
from tests.support.history_stores import HistoryStores
from tests.support.store_backends import KINDS, backend_of

START = 1_795_999_500.0  # a 15-minute boundary
TICK = 3.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=KINDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[HistoryStores]:
    """Stores on one backend of each kind, empty for the test."""
    async with HistoryStores(request.param, backend_of(request, tmp_path, "h.db")) as stores:
        yield stores


@pytest.fixture
async def history(stores: HistoryStores) -> HistoryStore:
    return await stores.opened()


def ticks(clock: Clock, store: HistoryStore, minutes: float, value: object) -> list:
    """Record a tick every TICK s for `minutes` (value(n) per tick, None a gap); the points."""
    points = []
    for n in range(int(minutes * 60 / TICK)):
        figure = value(n)  # type: ignore[operator]
        store.record(clock.now, {"kato.cpu_percent": figure})
        points.append((clock.now, figure))
        clock.now += TICK
    return points


def as_buckets(rows: list) -> list[Bucket]:
    return [Bucket(t, low, mean, high, count) for t, low, mean, high, count in rows if count]


def assert_same(got: list[Bucket], want: list[Bucket]) -> None:
    assert [(b.start, b.min, b.max, b.count) for b in got] == [
        (b.start, b.min, b.max, b.count) for b in want
    ]
    assert all(math.isclose(a.mean, b.mean, abs_tol=1e-9) for a, b in zip(got, want, strict=True))


async def test_points_and_the_buckets_the_store_folds_equal_the_reference_fold(
    history: HistoryStore, clock: Clock
) -> None:
    noise = random.Random(15)
    # 40 minutes, a KATO outage (gaps) from 12.5 to 14 min and figures that move about.
    points = ticks(
        clock, history, 40, lambda n: None if 250 <= n < 280 else round(noise.uniform(0, 100), 2)
    )
    clock.now += 60  # every bucket of those 40 minutes has ended, with its grace
    history.record(clock.now, {"kato.cpu_percent": 1.0})
    await history.flush()
    since, until = START, START + 40 * 60
    raw = (await history.points(["kato.cpu_percent"], since, until, 0))["kato.cpu_percent"]
    assert [(t, mean) for t, _, mean, _, _ in raw] == [
        (t, v) for t, v in points if v is not None or t == START + 250 * TICK
    ]  # the outage's 30 gaps read as one
    minutes = (await history.points(["kato.cpu_percent"], since, until, 60))["kato.cpu_percent"]
    assert_same(as_buckets(minutes), downsample(points, 60))
    gap = [row for row in minutes if row[4] == 0]
    assert [row[0] for row in gap] == [START + 13 * 60]  # one gap where a minute is missing
    quarters = (await history.points(["kato.cpu_percent"], since, until, 900))["kato.cpu_percent"]
    # the third quarter of an hour has not ended: not folded yet
    assert_same(as_buckets(quarters), merge(downsample(points, 60), 900)[:2])
    assert len(quarters) == 2
    assert history.write_failures == 0


async def test_each_tier_keeps_its_retention(stores: HistoryStores, clock: Clock) -> None:
    tiers = (Tier("raw", 0, 120), Tier("1m", 60, 600), Tier("15m", 900, 3600))
    store = await stores.opened(tiers)
    ticks(clock, store, 45, lambda n: float(n))
    await store.flush()
    everything = (START - 1, clock.now)
    series = ["kato.cpu_percent"]
    raw = (await store.points(series, *everything, 0))["kato.cpu_percent"]
    minutes = (await store.points(series, *everything, 60))["kato.cpu_percent"]
    quarters = (await store.points(series, *everything, 900))["kato.cpu_percent"]
    await store.aclose()
    # pruned when a minute last ended, so up to a minute more than each retention is kept
    assert clock.now - 120 - 60 <= raw[0][0] and len(raw) <= (120 + 60) / TICK
    assert clock.now - 600 - 60 <= minutes[0][0] and len(minutes) <= 11
    assert [row[0] for row in quarters] == [START, START + 900]  # 45 min: two have ended


async def test_a_reopened_store_keeps_the_history_and_folds_what_ended_meanwhile(
    stores: HistoryStores, clock: Clock
) -> None:
    store = await stores.opened()
    points = ticks(clock, store, 5, lambda n: float(n % 7))
    store.record(START + 30, {}, [Marker(START + 30, "session_created", {"count": 3})])
    await store.aclose()
    clock.now += 600  # down ten minutes
    store = await stores.opened()
    store.record(clock.now, {"kato.cpu_percent": 2.0})
    await store.flush()
    minutes = (await store.points(["kato.cpu_percent"], START, clock.now, 60))["kato.cpu_percent"]
    markers = await store.markers(START, clock.now, 100)
    names = await store.series()
    await store.aclose()
    assert_same(as_buckets(minutes), downsample(points, 60))
    assert markers == [Marker(START + 30, "session_created", {"count": 3})]
    assert names == ["kato.cpu_percent"]


async def test_every_statement_runs_in_the_store_thread(tmp_path: Path) -> None:
    history = SqliteHistory(str(tmp_path / "h.db"))
    await history.open()
    threads: set[str] = set()
    db = history._db
    assert db is not None
    await history._run(
        db.set_trace_callback, lambda _: threads.add(threading.current_thread().name)
    )
    history.record(START, {"kato.cpu_percent": 1.0}, [Marker(START, "session_created", {})])
    await history.points(["kato.cpu_percent"], START, START + 60, 0)
    await history.markers(START, START + 60, 10)
    await history.series()
    await history.aclose()
    assert threads and all(name.startswith("history-store") for name in threads), threads
    assert threading.current_thread().name not in threads


async def test_the_default_tiers_are_the_store_s(history: HistoryStore) -> None:
    assert history.tiers == TIERS


async def test_ticks_waiting_for_a_locked_file_are_bounded(tmp_path: Path) -> None:
    # Another process holds the file's write lock (a backup, a sqlite3 shell): the ticks wait
    # for it, and past MAX_PENDING they are dropped and counted rather than kept in memory.
    path = str(tmp_path / "h.db")
    history = SqliteHistory(path)
    await history.open()
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        for n in range(MAX_PENDING + 5):
            history.record(START + n, {"kato.cpu_percent": 1.0})
        assert history.write_failures >= 4  # the one the thread took is no longer waiting
    finally:
        lock.execute("COMMIT")
        lock.close()
    await history.flush()
    kept = await history.points(["kato.cpu_percent"], START, START + MAX_PENDING + 5, 0)
    assert MAX_PENDING <= len(kept["kato.cpu_percent"]) <= MAX_PENDING + 1
    await history.aclose()


async def test_past_the_limit_the_newest_markers_are_answered(history: HistoryStore) -> None:
    # A busy KATO changes sessions a thousand times an hour: a 24 h chart must mark the
    # latest hours, not stop at the oldest ones.
    markers = [Marker(START + n, "session_created", {"count": n}) for n in range(5)]
    for marker in markers:
        history.record(marker.time, {}, [marker])
    await history.flush()
    assert await history.markers(START, START + 60, 3) == markers[2:]


async def test_a_failing_file_is_one_warning_per_outage_not_one_per_tick(tmp_path: Path) -> None:
    # The points' table gone (as good as a broken file): every tick fails at once, and says so
    # once; writing again is said once too, at info level. Nothing at error level.
    path = str(tmp_path / "h.db")
    history = SqliteHistory(path)
    await history.open()
    other = sqlite3.connect(path, isolation_level=None)
    with capture_logs() as logs:
        other.execute("DROP TABLE history_points")
        for n in range(3):
            history.record(START + n, {"kato.cpu_percent": 1.0})
        await history.flush()
        assert history.write_failures == 3 and not history.writing
        other.executescript(SCHEMA)
        history.record(START + 3, {"kato.cpu_percent": 1.0})
        await history.flush()
    other.close()
    assert history.writing
    said = [(entry["log_level"], entry["event"]) for entry in logs]
    assert said == [("warning", "history.not_writing"), ("info", "history.writing")], logs
    await history.aclose()
