"""The history in SQLite (the single process's SSE_MONITOR_DB): points, buckets and markers.

One table holds every tier: a row is one series' point (`step` 0: min = mean = max = the value,
count 1; a gap has count 0 and no value) or one bucket (`step` 60 or 900). The producer hands
each tick over with `record`, which never waits: the store's own thread writes the tick in one
transaction, then folds every bucket that has just ended (1-minute buckets from the points,
15-minute ones from the 1-minute buckets, with SQL's min / max and a mean weighted by count)
and deletes what is past its tier's retention. Folding reads the rows already written, so a
restart loses no bucket: the next write folds what ended meanwhile. Reads run in that thread
too; nothing touches the disk on the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import structlog

from sse_monitor.history.buckets import TIERS, Row, Tier, fold_range, with_gaps
from sse_monitor.history.markers import Marker
from sse_monitor.settings import StoreError
from sse_monitor.store_thread import StoreThread, open_database

log = structlog.get_logger("sse_monitor.history.sqlite_store")
T = TypeVar("T")

# Ticks waiting for the store's thread; past it new ones are dropped (and counted), as Redis's
# store does: a disk that hangs (or a lock another process holds) must not grow memory forever.
MAX_PENDING = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS history_points (
    series TEXT NOT NULL,
    step INTEGER NOT NULL,
    t REAL NOT NULL,
    min REAL,
    mean REAL,
    max REAL,
    count INTEGER NOT NULL,
    PRIMARY KEY (series, step, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_markers (
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_points_by_age ON history_points (step, t);
CREATE INDEX IF NOT EXISTS history_markers_by_time ON history_markers (t);
CREATE TABLE IF NOT EXISTS history_folded (
    step INTEGER PRIMARY KEY,
    through REAL NOT NULL
);
"""


class SqliteHistory:
    """The history of one process, in one SQLite file, used by one thread of its own."""

    def __init__(self, path: str, tiers: Sequence[Tier] = TIERS) -> None:
        self.path = path
        self.tiers = tuple(tiers)
        self._thread = StoreThread("history-store")
        self._db: sqlite3.Connection | None = None
        self.write_failures = 0
        self.writing = True  # as far as we know; changed (and logged) by the store's thread
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        self._failures = threading.Lock()  # counted in both the loop's and the store's thread

    async def open(self) -> None:
        await self._run(self._open)

    def record(
        self, moment: float, figures: dict[str, float | None], markers: Iterable[Marker] = ()
    ) -> None:
        """One tick's figures (None: a gap) and markers, written in the store's thread: this
        never waits for the disk."""
        rows = [(series, moment, value) for series, value in figures.items()]
        marks = [(m.time, m.kind, json.dumps(m.data, separators=(",", ":"))) for m in markers]
        if not (rows or marks):
            return
        if not self._pending.acquire(blocking=False):
            self._failed()
            return
        self._thread.submit(self._write, moment, rows, marks)

    async def points(
        self, series: Sequence[str], since: float, until: float, step: float
    ) -> dict[str, list[Row]]:
        """Each series' points (step 0) or buckets of `step` s within [since, until], oldest
        first, as (time, min, mean, max, count). A gap is a row with count 0 and no values:
        a tick without the figure, or the first missing bucket between two."""
        return await self._run(self._points, list(series), since, until, step)

    async def markers(self, since: float, until: float, limit: int) -> list[Marker]:
        return await self._run(self._markers, since, until, limit)

    async def series(self) -> list[str]:
        """Every series with a point or bucket kept."""
        return await self._run(self._series)

    async def flush(self) -> None:
        """Wait for what was recorded so far to be written (tests, and a clean stop)."""
        await self._run(lambda: None)

    async def aclose(self) -> None:
        if self._db is not None:
            await self._run(self._close)
        self._thread.shutdown()

    def check(self) -> None:
        """Open and close the file once before the app starts: a bad SSE_MONITOR_DB is then a
        configuration error, not a failed start-up."""
        self._connect().close()

    # In the store's thread

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await self._thread.run(function, *args)

    def _open(self) -> None:
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        # NORMAL: a power cut may lose the newest ticks, never the file
        return open_database(
            self.path,
            "the history",
            synchronous="NORMAL",
            prepare=lambda db: db.executescript(SCHEMA),
        )

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: the history is not open")
        return self._db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _failed(self) -> None:
        with self._failures:
            self.write_failures += 1

    def _write(
        self, moment: float, rows: list[tuple[str, float, float | None]], marks: list[Any]
    ) -> None:
        self._pending.release()  # no longer waiting
        try:
            db = self._connection()
            with db:
                db.execute("BEGIN")
                db.executemany(
                    "INSERT OR REPLACE INTO history_points VALUES (?, 0, ?, ?, ?, ?, ?)",
                    [
                        (series, moment, value, value, value, 0 if value is None else 1)
                        for series, moment, value in rows
                    ],
                )
                db.executemany("INSERT INTO history_markers VALUES (?, ?, ?)", marks)
                if rows:
                    # Timed by the ticks, not by the clock when the write runs: a write that
                    # runs late (a slow disk) still folds a minute once its points are all in.
                    self._fold(db, moment)
        except (sqlite3.Error, StoreError) as exc:  # a full disk: this tick is lost, not the app
            self._failed()
            if self.writing:  # one line per outage, as the Redis store logs, not one per tick
                self.writing = False
                log.warning("history.not_writing", path=self.path, error=str(exc))
            return
        if not self.writing:
            self.writing = True
            log.info("history.writing", path=self.path)

    def _fold(self, db: sqlite3.Connection, now: float) -> None:
        """Fold every bucket that ended (with its grace) since the last fold, tier by tier,
        then delete what each tier no longer keeps."""
        source, folded_any = self.tiers[0], False
        for tier in self.tiers[1:]:
            row = db.execute("SELECT through FROM history_folded WHERE step = ?", (tier.step,))
            folded = row.fetchone()
            due = fold_range(tier, now, folded[0] if folded else None)
            if due is not None:
                start, ended = due
                db.execute(
                    """
                    INSERT OR REPLACE INTO history_points
                    SELECT series, :step, CAST(t / :step AS INTEGER) * :step AS bucket,
                           min(min), sum(mean * count) / sum(count), max(max), sum(count)
                    FROM history_points
                    WHERE step = :source AND t >= :start AND t < :ended AND count > 0
                    GROUP BY series, bucket
                    """,
                    {"step": tier.step, "source": source.step, "start": start, "ended": ended},
                )
                db.execute(
                    "INSERT OR REPLACE INTO history_folded VALUES (?, ?)", (tier.step, ended)
                )
                folded_any = True
            source = tier
        if not folded_any:
            return  # retention moves on once a bucket ends: a minute, not each tick
        for tier in self.tiers:
            db.execute(
                "DELETE FROM history_points WHERE step = ? AND t < ?",
                (tier.step, now - tier.retention),
            )
        longest = max(tier.retention for tier in self.tiers)
        db.execute("DELETE FROM history_markers WHERE t < ?", (now - longest,))

    def _points(
        self, series: list[str], since: float, until: float, step: float
    ) -> dict[str, list[Row]]:
        db = self._connection()
        answer: dict[str, list[Row]] = {}
        for name in series:
            rows = db.execute(
                "SELECT t, min, mean, max, count FROM history_points "
                "WHERE series = ? AND step = ? AND t >= ? AND t <= ? ORDER BY t",
                (name, step, since, until),
            ).fetchall()
            answer[name] = with_gaps(rows, step)
        return answer

    def _markers(self, since: float, until: float, limit: int) -> list[Marker]:
        rows = self._connection().execute(  # past the limit, the newest
            "SELECT t, kind, data FROM history_markers WHERE t >= ? AND t <= ? "
            "ORDER BY t DESC LIMIT ?",
            (since, until, limit),
        )
        return [Marker(t, kind, json.loads(data)) for t, kind, data in reversed(rows.fetchall())]

    def _series(self) -> list[str]:
        rows = self._connection().execute("SELECT DISTINCT series FROM history_points")
        return sorted(name for (name,) in rows)
