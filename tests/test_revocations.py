"""The revocation store on a real SQLite file: refused at once, kept across restarts, pruned
when the cookie expires, bounded, and written off the event loop."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from sse_monitor.alerts.store import StoreError
from sse_monitor.web.revocations import SQLiteRevocations

NOW = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT signature, expires FROM revoked_sessions").fetchall())


async def test_a_revocation_survives_a_restart_until_its_cookie_expires(tmp_path: Path) -> None:
    clock, path = Clock(), tmp_path / "gateway.db"
    store = SQLiteRevocations(str(path), clock=clock)
    await store.open()
    await store.revoke("short", NOW + 10)
    await store.revoke("long", NOW + 3600)
    await store.revoke("already-expired", NOW - 1)  # nothing to refuse: not kept
    assert await store.is_revoked("short") and await store.is_revoked("long")
    assert not await store.is_revoked("already-expired") and not await store.is_revoked("other")
    await store.aclose()
    assert rows(path) == {"short": NOW + 10, "long": NOW + 3600}

    clock.now += 60  # "short" has expired: the next start-up drops it, on disk too
    again = SQLiteRevocations(str(path), clock=clock)
    await again.open()
    assert await again.is_revoked("long") and not await again.is_revoked("short")
    assert rows(path) == {"long": NOW + 3600}
    clock.now += 7200
    await again.revoke("later", int(clock.now) + 10)  # a write prunes what has expired
    assert not await again.is_revoked("long")
    await again.aclose()
    assert rows(path) == {"later": NOW + 60 + 7200 + 10}


async def test_the_set_is_bounded_forgetting_the_soonest_to_expire(tmp_path: Path) -> None:
    clock, path = Clock(), tmp_path / "gateway.db"
    store = SQLiteRevocations(str(path), max_revoked=3, clock=clock)
    await store.open()
    for n, expires in enumerate([NOW + 50, NOW + 10, NOW + 90, NOW + 70]):
        await store.revoke(f"s{n}", expires)
    assert [await store.is_revoked(f"s{n}") for n in range(4)] == [True, False, True, True]
    await store.aclose()
    reloaded = SQLiteRevocations(str(path), max_revoked=3, clock=clock)
    await reloaded.open()  # the file still has all four: the start-up loads the latest three
    assert [await reloaded.is_revoked(f"s{n}") for n in range(4)] == [True, False, True, True]
    await reloaded.aclose()


async def test_every_statement_runs_in_the_store_thread(tmp_path: Path) -> None:
    store = SQLiteRevocations(str(tmp_path / "gateway.db"))
    await store.open()
    threads: set[str] = set()
    assert store._db is not None
    trace = store._db.set_trace_callback  # sqlite3 itself refuses a call from another thread
    await store._run(trace, lambda _: threads.add(threading.current_thread().name))
    await store.revoke("sig", NOW * 2)
    await store.aclose()
    assert threads and all(name.startswith("revocations") for name in threads)


async def test_in_memory_works_and_keeps_nothing() -> None:
    store = SQLiteRevocations(":memory:")
    await store.open()
    await store.revoke("sig", NOW * 2)
    assert await store.is_revoked("sig")
    await store.aclose()


async def test_an_unusable_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_bytes(b"this is not sqlite" * 100)
    store = SQLiteRevocations(str(tmp_path / "not-a-db"))
    with pytest.raises(StoreError, match="not-a-db"):
        await store.open()
    await store.aclose()


async def test_a_failed_write_still_refuses_the_cookie_and_raises_nothing(tmp_path: Path) -> None:
    """A full or read-only disk must not turn a logout into a 500: the cookie is refused in this
    process all the same, and the failure is logged (ours, not the client's)."""
    store = SQLiteRevocations(str(tmp_path / "gateway.db"))
    await store.open()
    assert store._db is not None
    await store._run(store._db.execute, "PRAGMA query_only = ON")  # every write now fails
    await store.revoke("sig", NOW * 2)
    assert await store.is_revoked("sig")
    await store.aclose()
    assert rows(tmp_path / "gateway.db") == {}
