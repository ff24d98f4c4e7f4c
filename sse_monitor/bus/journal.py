"""The in-memory log's journal in SQLite, so that a restart loses neither history nor ids.

It keeps, in the file SSE_MONITOR_DB (tables of its own beside the alerts and revocations): the
log's epoch and position, the last `history_size` durable frames and the newest frame of each
state event, as the bytes that were sent. `MemoryLog` hands it every frame it appends; a thread
of its own writes them, a batch per wake-up in one transaction, so that appending never waits
for the disk. That thread alone uses the connection, from `open` to `aclose`.

Which ids may resume after a restart:

- After a clean stop (`aclose`: everything written, then the file marked stopped), the log
  goes on in the same epoch from the same position: every id it issued resumes.
- After any other stop (kill -9, a crash, a power cut), the newest ids may never have been
  written, and a client holding one, or an older one, may have missed them. The log then
  starts a new epoch (keeping the saved history and state, under their old ids), so every id
  of the lost life is answered with a `reset` rather than a silent gap.
- A second process opening the same file takes it over, as after an unclean stop; the first
  stops writing (and logs why) at its next batch.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import structlog

from sse_monitor.bus.event import Event, topic_of
from sse_monitor.bus.log import Frame
from sse_monitor.settings import StoreError

log = structlog.get_logger("sse_monitor.bus.journal")

SCHEMA_VERSION = 1  # in log_meta, not PRAGMA user_version: that one is the alert store's
SCHEMA = """
CREATE TABLE IF NOT EXISTS log_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    epoch TEXT NOT NULL,
    position INTEGER NOT NULL,
    evicted_through INTEGER NOT NULL,
    owner TEXT
);
CREATE TABLE IF NOT EXISTS log_history (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    frame BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_state (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    frame BLOB NOT NULL
);
"""
# A loaded frame was appended by an earlier process: long ago for this one (/readyz must not
# take a saved `metrics` for a recent poll). Not -inf: a stream's lag is measured from it.
LONG_AGO = 0.0
_STOP = object()  # queued by aclose: write what came before, then stop


class Superseded(Exception):
    """Another process opened the journal since this one did."""


@dataclass(frozen=True, slots=True)
class Saved:
    """What a journal kept: the log resumes from it."""

    epoch: str
    position: int  # the seq of the newest frame written
    evicted_through: int  # the highest seq of a durable frame pruned from the history
    frames: list[Frame]  # the durable history and the newest state, by seq
    clean: bool  # whether the last process stopped cleanly (its ids resume)


class Journal:
    """One log's frames in one SQLite file, written by a thread of its own."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._owner = uuid.uuid4().hex  # names this process's hold on the file
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._opened: Future[Saved] = Future()
        self._stopped: Future[None] = Future()
        self._thread: threading.Thread | None = None
        self.writing = False  # from open to aclose: the log may issue ids only then

    def check(self) -> None:
        """Open and close the file once, before the app starts, so that a bad SSE_MONITOR_DB
        is a configuration error and not a failed start-up."""
        self._connect().close()

    async def open(self, epoch: str, history_size: int) -> Saved:
        """Load what was kept (`epoch` names the log if nothing was, or if the last process
        did not stop cleanly), take the file over, and start writing."""
        # A daemon thread: one that was never closed (a crash) must not keep the process alive.
        self._thread = threading.Thread(
            target=self._serve, args=(epoch, history_size), name="event-journal", daemon=True
        )
        self._thread.start()
        saved = await asyncio.wrap_future(self._opened)
        self.writing = True
        fields = {"path": self.path, "epoch": saved.epoch, "position": saved.position}
        if saved.clean:
            log.info("journal.loaded", frames=len(saved.frames), **fields)
        else:
            # The ids of the last life may not all have been written: none of them resumes.
            log.warning("journal.unclean_stop", frames=len(saved.frames), **fields)
        return saved

    def record(self, frame: Frame) -> None:
        """Queue a frame for the writer: never waits."""
        self._queue.put(frame)

    async def aclose(self) -> None:
        """Write everything queued, mark the file cleanly stopped, and close it."""
        if self._thread is None:
            return
        self.writing = False
        self._queue.put(_STOP)
        await asyncio.wrap_future(self._stopped)

    # In the journal's thread

    def _serve(self, epoch: str, history_size: int) -> None:
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
            saved = self._load(db, epoch)
        except Exception as exc:  # the app must not start over a journal it cannot read
            if db is not None:
                db.close()
            if not isinstance(exc, StoreError):
                exc = StoreError(f"{self.path}: cannot read the event journal: {exc}")
            self._opened.set_exception(exc)
            self._stopped.set_result(None)
            return
        self._opened.set_result(saved)
        try:
            history = sum(1 for frame in saved.frames if frame.event.durable)
            if self._write_until_stopped(db, history_size, history):
                with db:
                    db.execute("UPDATE log_meta SET owner = NULL WHERE owner = ?", (self._owner,))
        except sqlite3.Error as exc:
            log.error("journal.close_failed", path=self.path, error=str(exc))
        finally:
            db.close()
            self._stopped.set_result(None)

    def _connect(self) -> sqlite3.Connection:
        folder = Path(self.path).parent
        if not folder.is_dir():
            raise StoreError(f"{self.path}: the folder {folder} does not exist")
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA journal_mode = WAL")
            # A commit survives a process's crash; a power cut may roll the newest back, and
            # then the file is not marked stopped either: a new epoch, as after a crash.
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript(SCHEMA)
            version = db.execute("SELECT schema_version FROM log_meta").fetchone()
            if version is not None and version[0] > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: the event journal was written by a newer sse-monitor "
                    f"(schema {version[0]}, this one knows {SCHEMA_VERSION})"
                )
        except (sqlite3.Error, StoreError) as exc:
            db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.path}: cannot open the event journal: {exc}") from None
        return db

    def _load(self, db: sqlite3.Connection, epoch: str) -> Saved:
        with db:
            db.execute("BEGIN IMMEDIATE")
            meta = db.execute(
                "SELECT epoch, position, evicted_through, owner FROM log_meta"
            ).fetchone()
            if meta is None:
                db.execute(
                    "INSERT INTO log_meta VALUES (1, ?, ?, 0, 0, ?)",
                    (SCHEMA_VERSION, epoch, self._owner),
                )
                return Saved(epoch, 0, 0, [], clean=True)
            saved_epoch, position, evicted_through, owner = meta
            clean = owner is None
            epoch = saved_epoch if clean else epoch
            db.execute("UPDATE log_meta SET epoch = ?, owner = ?", (epoch, self._owner))
            history = db.execute("SELECT seq, id, name, frame FROM log_history").fetchall()
            state = db.execute("SELECT seq, id, name, frame FROM log_state").fetchall()
        frames = [_frame(row, durable=True) for row in history]
        frames += [_frame(row, durable=False) for row in state]
        frames.sort(key=lambda frame: frame.seq)
        return Saved(epoch, position, evicted_through, frames, clean)

    def _write_until_stopped(self, db: sqlite3.Connection, history_size: int, rows: int) -> bool:
        """Write what is queued, a batch per wake-up, until aclose: whether all was written.
        `rows` counts the durable frames in the file."""
        failed = False
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            frames = [item for item in batch if item is not _STOP]
            if frames and not failed:
                try:
                    rows = self._write(db, frames, history_size, rows)
                except Exception as exc:  # a full disk, another process, ...
                    # What was issued is no longer kept: from here the file is not marked
                    # stopped, so the next start is a new epoch, as after a crash.
                    failed = True
                    log.error("journal.write_failed", path=self.path, error=str(exc))
            if len(frames) < len(batch):
                return not failed

    def _write(
        self, db: sqlite3.Connection, frames: list[Frame], history_size: int, rows: int
    ) -> int:
        """One batch in one transaction; the history pruned to `history_size`. Returns the
        number of durable frames kept."""
        durable = [_row(frame) for frame in frames if frame.event.durable]
        newest_state = {frame.event.name: frame for frame in frames if not frame.event.durable}
        with db:
            db.execute("BEGIN")
            if not db.execute(
                "UPDATE log_meta SET position = ? WHERE owner = ?", (frames[-1].seq, self._owner)
            ).rowcount:
                raise Superseded(f"{self.path}: another process opened the event journal")
            db.executemany("INSERT INTO log_history VALUES (?, ?, ?, ?)", durable)
            db.executemany(
                "INSERT OR REPLACE INTO log_state VALUES (?, ?, ?, ?)",
                [(name, frame.seq, frame.id, frame.data) for name, frame in newest_state.items()],
            )
            rows += len(durable)
            if rows > history_size:
                self._prune(db, rows - history_size)
                rows = history_size
        return rows

    def _prune(self, db: sqlite3.Connection, count: int) -> None:
        """Delete the oldest `count` durable frames, as the log's history drops them."""
        (newest_pruned,) = db.execute(
            "SELECT seq FROM log_history ORDER BY seq LIMIT 1 OFFSET ?", (count - 1,)
        ).fetchone()
        db.execute("DELETE FROM log_history WHERE seq <= ?", (newest_pruned,))
        db.execute(
            "UPDATE log_meta SET evicted_through = max(evicted_through, ?)", (newest_pruned,)
        )


def _row(frame: Frame) -> tuple[int, str, str, bytes]:
    return (frame.seq, frame.id, frame.event.name, frame.data)


def _frame(row: tuple[int, str, str, bytes], *, durable: bool) -> Frame:
    """A frame as it was appended, from the bytes that were sent."""
    seq, event_id, name, data = row
    text = bytes(data).decode("utf-8")
    payload = "\n".join(line[6:] for line in text.split("\n") if line.startswith("data: "))
    event = Event(name, json.loads(payload), durable)
    return Frame(seq, event_id, event, bytes(data), topic_of(name), LONG_AGO)
