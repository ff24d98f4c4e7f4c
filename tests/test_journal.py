"""The in-memory log kept in SQLite (bus/journal.py): what a restart on the same file resumes,
and what it must not (an unclean stop, a forged id, a second process on the file)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from sse_monitor.alerts.store import AlertStore
from sse_monitor.bus.event import Event
from sse_monitor.bus.journal import LONG_AGO, Journal
from sse_monitor.bus.log import Frame
from sse_monitor.bus.memory import MemoryLog
from sse_monitor.settings import StoreError
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]


def durable(n: int) -> Event:
    return Event("session_event", {"n": n, "text": "é\u2028x"}, durable=True)


def metrics(n: int) -> Event:
    return Event("metrics", {"n": n})


async def opened(path: Path, history_size: int = 10, epoch: str | None = None) -> MemoryLog:
    log = MemoryLog(history_size=history_size, epoch=epoch, journal=Journal(str(path)))
    await log.open()
    return log


@asynccontextmanager
async def running(path: Path, history_size: int = 10) -> AsyncIterator[MemoryLog]:
    """A journaled log for the block, stopped cleanly after it (as on SIGTERM)."""
    log = await opened(path, history_size)
    try:
        yield log
    finally:
        await log.aclose()


def append(log: MemoryLog, event: Event) -> Frame:
    log.append(event)
    assert log.head is not None
    return log.head


def meta(path: Path) -> tuple[str, int, int, str | None]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT epoch, position, evicted_through, owner FROM log_meta").fetchone()


def same(frames: list[Frame]) -> list[tuple[int, str, str, bytes, bool]]:
    """What a client is sent of each frame, and where it stands."""
    return [(f.seq, f.id, f.event.name, f.data, f.event.durable) for f in frames]


async def written_through(path: Path, seq: int) -> None:
    """Wait until the journal's thread has written the frame at `seq`."""
    await eventually(lambda: meta(path)[1] >= seq, what=f"position {seq} written")


async def test_after_a_clean_stop_an_id_resumes_with_exactly_the_frames_it_missed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gateway.db"
    async with running(db) as first:
        seen = append(first, durable(1))
        missed = [append(first, durable(2)), append(first, metrics(3)), append(first, durable(4))]
        epoch, head = first.epoch, first.head
    async with running(db) as second:
        assert second.epoch == epoch and second.head is not None
        assert same([second.head]) == same([head])
        replay = await second.replay(seen.id)
        assert replay.reset is None
        assert same(replay.frames) == same(missed)
        assert [frame.event.data for frame in replay.frames] == [
            frame.event.data for frame in missed
        ]
        assert (await second.replay(missed[-1].id)).frames == []
        after = append(second, durable(5))
        assert after.id == f"{epoch}-5"  # the position goes on: no id is issued twice
        assert same((await second.replay(missed[-1].id)).frames) == same([after])


async def test_the_newest_state_is_restored_as_appended_long_ago_and_not_delivered(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gateway.db"
    async with running(db) as first:
        for n in range(3):
            append(first, metrics(n))
        newest = append(first, Event("alerts", {"firing": []}))
    restarted = MemoryLog(history_size=10, journal=Journal(str(db)))
    delivered: list[Frame] = []
    restarted.follow(delivered.append)
    await restarted.open()
    try:
        current = await restarted.current()
        assert [(f.event.name, f.event.data) for f in current] == [
            ("metrics", {"n": 2}),
            ("alerts", {"firing": []}),
        ]
        assert same(current[-1:]) == same([newest])
        assert {frame.appended_at for frame in current} == {LONG_AGO}
        assert delivered == []  # loading is not appending: no client is sent it again
    finally:
        await restarted.aclose()


async def test_the_history_is_kept_to_its_size_in_the_file_and_after_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gateway.db"
    async with running(db, history_size=5) as first:
        frames = [append(first, durable(n)) for n in range(12)]
    with sqlite3.connect(db) as file:
        kept = [seq for (seq,) in file.execute("SELECT seq FROM log_history ORDER BY seq")]
    assert kept == [frame.seq for frame in frames[-5:]]
    assert meta(db)[2] == frames[-6].seq  # evicted through
    async with running(db, history_size=5) as second:
        assert same(await second.recent(100)) == same(frames[-5:])
        assert (await second.replay(frames[-7].id)).reset == "too_old"
        assert same((await second.replay(frames[-6].id)).frames) == same(frames[-5:])
    async with running(db, history_size=3) as smaller:  # SSE_MONITOR_HISTORY lowered
        assert same(await smaller.recent(100)) == same(frames[-3:])
        assert (await smaller.replay(frames[-5].id)).reset == "too_old"
        append(smaller, durable(99))
    with sqlite3.connect(db) as file:
        assert file.execute("SELECT count(*) FROM log_history").fetchone() == (3,)


@pytest.mark.parametrize(
    "make_id",
    [
        lambda epoch: f"{'0' * 8 if epoch != '0' * 8 else '1' * 8}-1",  # another epoch
        lambda epoch: f"{epoch}-999",  # this epoch, never issued
        lambda epoch: "forged",
    ],
    ids=["other epoch", "never issued", "not an id"],
)
async def test_an_id_the_log_never_issued_is_reset_after_a_restart(
    tmp_path: Path, make_id: Callable[[str], str]
) -> None:
    db = tmp_path / "gateway.db"
    async with running(db) as first:
        append(first, durable(1))
        state = append(first, metrics(2))
    async with running(db) as second:
        replay = await second.replay(make_id(second.epoch))
        assert replay.reset == "unknown_id"
        assert [f.event.name for f in replay.frames] == ["reset", "metrics"]
        assert replay.frames[1].data == state.data


async def test_after_an_unclean_stop_no_id_of_the_lost_life_resumes(tmp_path: Path) -> None:
    """Frames issued after the last one written are lost, and any client may have missed
    them, whatever its id: a new epoch, and every old id is reset, never a silent gap."""
    db = tmp_path / "gateway.db"
    crashed = await opened(db)  # never closed: its thread is simply left behind
    written = [append(crashed, durable(n)) for n in range(3)]
    await written_through(db, written[-1].seq)
    async with running(db) as restarted:
        assert restarted.epoch != crashed.epoch
        for frame in written:  # the last one written too: one after it may have been lost
            replay = await restarted.replay(frame.id)
            assert replay.reset == "unknown_id", frame.id
        # What was saved is still the history (for /api/events and the producer's seeding).
        assert same(await restarted.recent(10)) == same(written)
        fresh = append(restarted, durable(4))
        assert fresh.id == f"{restarted.epoch}-{written[-1].seq + 1}"
        assert (await restarted.replay(fresh.id)).reset is None
    async with running(db) as after_a_clean_stop:
        assert after_a_clean_stop.epoch == restarted.epoch
        assert (await after_a_clean_stop.replay(fresh.id)).reset is None


KILLED_WHILE_APPENDING = """
import asyncio, os, signal, sys
from sse_monitor.bus.event import Event
from sse_monitor.bus.journal import Journal
from sse_monitor.bus.memory import MemoryLog

async def main():
    log = MemoryLog(history_size=100_000, journal=Journal(sys.argv[1]))
    await log.open()
    for n in range(20_000):
        log.append(Event("session_event", {"n": n}, durable=True))
    print(log.head.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # before the journal's thread can catch up

asyncio.run(main())
"""


async def test_a_process_killed_with_ids_not_yet_written_resets_them(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    killed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", textwrap.dedent(KILLED_WHILE_APPENDING), str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    last_issued = killed.stdout.strip()
    epoch, position, _, owner = meta(db)
    assert owner is not None  # never marked stopped
    async with running(db, history_size=100_000) as restarted:
        assert restarted.epoch != epoch
        assert (await restarted.replay(last_issued)).reset == "unknown_id"
        assert (await restarted.replay(f"{epoch}-{position}")).reset == "unknown_id"
        assert len(await restarted.recent(100_000)) == position


async def test_a_second_process_on_the_same_file_takes_it_over(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    first = await opened(db)
    kept = append(first, durable(1))
    await written_through(db, kept.seq)
    second = await opened(db)  # the first is still running: as after an unclean stop
    assert second.epoch != first.epoch
    append(first, durable(2))  # not written: the file is the second's now
    await first.aclose()
    taken_over = append(second, durable(3))
    await second.aclose()
    async with running(db) as third:
        assert third.epoch == second.epoch
        assert same(await third.recent(10)) == same([kept, taken_over])


async def test_without_a_journal_open_no_id_is_issued(tmp_path: Path) -> None:
    log = MemoryLog(history_size=10, journal=Journal(str(tmp_path / "gateway.db")))
    log.append(durable(1))  # before open: this id could be issued again after it
    assert log.head is None
    await log.open()
    issued = append(log, durable(2))
    await log.aclose()
    log.append(durable(3))  # after aclose: it would not be kept
    assert log.head is issued


async def test_a_log_without_a_journal_keeps_nothing() -> None:
    first = MemoryLog(history_size=10)
    await first.open()
    frame = append(first, durable(1))
    await first.aclose()
    second = MemoryLog(history_size=10)
    await second.open()
    assert (await second.replay(frame.id)).reset == "unknown_id"
    assert await second.recent(10) == []


def test_an_unusable_file_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "gateway.db"
    with pytest.raises(StoreError, match=f"^{missing}: the folder"):
        Journal(str(missing)).check()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all\n" * 64)
    with pytest.raises(StoreError, match=f"^{junk}: cannot open the event journal"):
        Journal(str(junk)).check()


async def test_a_journal_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    async with running(db):
        pass
    with sqlite3.connect(db) as file:
        file.execute("UPDATE log_meta SET schema_version = 99")
    with pytest.raises(StoreError, match="newer sse-monitor"):
        Journal(str(db)).check()


async def test_the_journal_shares_the_file_with_the_alert_store(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    store = AlertStore(str(db))
    await store.open()
    try:
        async with running(db) as log:
            frame = append(log, durable(1))
        assert await store.firing() == []
        AlertStore(str(db)).check()  # its schema version is its own still
    finally:
        await store.aclose()
    async with running(db) as restarted:
        assert (await restarted.replay(frame.id)).reset is None
