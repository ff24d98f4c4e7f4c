"""Alerts and acknowledgements in SQLite, so that they survive a restart.

sqlite3 blocks, so every call runs in one dedicated thread: the event loop never waits on the
disk, and the connection is only ever used by the thread that opened it, one statement after
another (no locking of our own). `:memory:` keeps nothing across restarts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sse_monitor.alerts.alert import Alert, stamp
from sse_monitor.alerts.columns import COLUMNS, from_columns, to_columns
from sse_monitor.settings import StoreError
from sse_monitor.store_thread import StoreThread, open_database

T = TypeVar("T")

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    subject TEXT,
    metric TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    message TEXT NOT NULL,
    value TEXT,
    threshold TEXT,
    started_at TEXT NOT NULL,
    resolved_at TEXT,
    resolved_value TEXT,
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    ack_note TEXT
);
CREATE INDEX IF NOT EXISTS alerts_by_start ON alerts (started_at, id);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, started_at, id);
"""


class AlertStorage(Protocol):
    """What the alert manager and the API need of a store: SQLite here, Redis in a cluster
    (redis_store.py), with the same results. A store shared by nodes keeps, on save, an ack
    another node stored meanwhile; one that does not answer raises StoreUnavailable."""

    path: str  # where it is, for the log

    async def open(self) -> None: ...
    async def save(self, alerts: Iterable[Alert]) -> None: ...
    async def firing(self) -> list[Alert]: ...
    async def get(self, alert_id: str) -> Alert | None: ...
    async def acknowledge(
        self, alert_id: str, by: str, note: str | None, at: datetime
    ) -> tuple[Alert, bool] | None: ...
    async def page(
        self, *, state: str | None, severity: str | None, limit: int, before: tuple[str, str] | None
    ) -> list[Alert]: ...
    async def prune(self, resolved_before: datetime) -> int: ...
    async def aclose(self) -> None: ...


class StoreUnavailable(Exception):
    """The store did not answer in time, or refused (Redis down, restarting, or full): the call
    may succeed later. The message names the store, never a password."""


class AlertStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = StoreThread("alert-store")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._run(self._open)

    async def save(self, alerts: Iterable[Alert]) -> None:
        rows = [to_columns(alert) for alert in alerts]
        if rows:
            await self._run(self._save, rows)

    async def firing(self) -> list[Alert]:
        return await self._run(self._select, "WHERE state = 'firing' ORDER BY started_at, id", ())

    async def get(self, alert_id: str) -> Alert | None:
        found = await self._run(self._select, "WHERE id = ?", (alert_id,))
        return found[0] if found else None

    async def acknowledge(
        self, alert_id: str, by: str, note: str | None, at: datetime
    ) -> tuple[Alert, bool] | None:
        """The alert after the ack, and whether this call changed it (the first ack wins)."""
        return await self._run(self._acknowledge, alert_id, by, note, stamp(at))

    async def page(
        self,
        *,
        state: str | None,
        severity: str | None,
        limit: int,
        before: tuple[str, str] | None,
    ) -> list[Alert]:
        """Newest first by start time; `before` is the (started_at, id) the page starts after."""
        clauses: list[str] = []
        params: list[Any] = []
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        if severity is not None:
            clauses.append("severity = ?")
            params.append(severity)
        if before is not None:
            clauses.append("(started_at < ? OR (started_at = ? AND id < ?))")
            params.extend([before[0], before[0], before[1]])
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        query = f"{where}ORDER BY started_at DESC, id DESC LIMIT ?"
        return await self._run(self._select, query, (*params, limit))

    async def prune(self, resolved_before: datetime) -> int:
        """Delete resolved alerts older than the retention; firing ones are always kept."""
        return await self._run(self._prune, stamp(resolved_before))

    async def aclose(self) -> None:
        if self._db is not None:
            await self._run(self._close)
        self._thread.shutdown()

    # In the store's thread

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await self._thread.run(function, *args)

    def check(self) -> None:
        """Open and close the database once, before the app starts (no event loop runs yet), so
        that a bad SSE_MONITOR_DB is a configuration error and not a failed start-up."""
        self._connect().close()

    def _open(self) -> None:
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        # FULL: an announced alert is on disk
        return open_database(
            self.path, "the alert database", synchronous="FULL", prepare=self._prepare
        )

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.row_factory = sqlite3.Row
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: written by a newer sse-monitor (schema {version}, "
                f"this one knows {SCHEMA_VERSION})"
            )
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: the alert database is not open")
        return self._db

    def _save(self, rows: list[tuple[Any, ...]]) -> None:
        placeholders = ", ".join("?" for _ in COLUMNS)
        db = self._connection()
        with db:
            db.execute("BEGIN")
            db.executemany(
                f"INSERT OR REPLACE INTO alerts ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                rows,
            )

    def _select(self, clause: str, params: tuple[Any, ...]) -> list[Alert]:
        cursor = self._connection().execute(f"SELECT * FROM alerts {clause}", params)
        return [from_columns(row) for row in cursor.fetchall()]

    def _acknowledge(
        self, alert_id: str, by: str, note: str | None, at: str
    ) -> tuple[Alert, bool] | None:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            changed = db.execute(
                "UPDATE alerts SET acknowledged_by = ?, acknowledged_at = ?, ack_note = ? "
                "WHERE id = ? AND acknowledged_at IS NULL",
                (by, at, note, alert_id),
            ).rowcount
        found = self._select("WHERE id = ?", (alert_id,))
        return (found[0], changed == 1) if found else None

    def _prune(self, before: str) -> int:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            return db.execute(
                "DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < ?", (before,)
            ).rowcount

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
