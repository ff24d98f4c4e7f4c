"""The notification outbox in SQLite: every message to a receiver is recorded here, in one
transaction, before anything is sent, and its fate (delivered, to retry at, failed) is recorded
as soon as it is known. A restart resumes the pending ones; a delivered one is never sent again.

Entries name their receiver, not its URL: a receiver's URL is often its secret (a Slack webhook),
and it stays in the configuration, out of this file and of the API. Times are wall-clock seconds
since the epoch (a Retry-After date is one). Every statement runs in the store's own thread.
The file may be the alert store's (SSE_MONITOR_DB): the table is separate, and `user_version`
is left to the alert store.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sse_monitor.settings import StoreError
from sse_monitor.store_thread import StoreThread, open_database

STATES = ("pending", "delivered", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    created REAL NOT NULL,
    next_attempt REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    last_error TEXT,
    UNIQUE (receiver, idempotency_key)
);
CREATE INDEX IF NOT EXISTS notify_outbox_queue ON notify_outbox (state, receiver, id);
"""

# The oldest pending entry of each receiver: a receiver gets its messages in the order they were
# recorded (a resolve never overtakes its firing), and one that is down holds back only its own.
_HEADS = """
state = 'pending' AND id = (
    SELECT MIN(id) FROM notify_outbox AS queue
    WHERE queue.receiver = notify_outbox.receiver AND queue.state = 'pending'
)
"""


@dataclass(frozen=True)
class NewDelivery:
    """A message for one receiver, as the notifier makes it: its body is final (signed), and its
    idempotency key, also in the body, stays the same across every attempt."""

    receiver: str
    idempotency_key: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """An entry of the outbox, as recorded."""

    id: int
    receiver: str
    idempotency_key: str
    body: bytes
    headers: dict[str, str]
    created: float
    next_attempt: float
    attempts: int
    state: str
    last_error: str | None


class Outbox:
    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._thread = StoreThread("notify-outbox")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._thread.run(self._open)

    async def add(self, entries: Iterable[NewDelivery]) -> list[int]:
        """Record the entries, all or none, due at once; their ids, in order. An entry whose
        receiver and idempotency key are already recorded is not added again (its id is)."""
        rows = [
            (
                entry.receiver,
                entry.idempotency_key,
                entry.body,
                json.dumps(dict(entry.headers)),
            )
            for entry in entries
        ]
        if not rows:
            return []
        return await self._thread.run(self._add, rows, self._clock())

    async def due(self, now: float, limit: int) -> list[Delivery]:
        """Entries to send now, at most one per receiver (its oldest pending), soonest first."""
        query = f"WHERE {_HEADS} AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?"
        return await self._thread.run(self._select, query, (now, limit))

    async def next_attempt(self) -> float | None:
        """When the next entry is due (possibly already past), or None when none is pending."""
        return await self._thread.run(self._next_attempt)

    async def delivered(self, entry_id: int) -> None:
        await self._thread.run(self._record, entry_id, "delivered", None, None)

    async def retry_at(self, entry_id: int, when: float, error: str) -> None:
        await self._thread.run(self._record, entry_id, "pending", when, error)

    async def failed(self, entry_id: int, error: str) -> None:
        """Given up for good: a permanent refusal, or retried for too long."""
        await self._thread.run(self._record, entry_id, "failed", None, error)

    async def get(self, entry_id: int) -> Delivery | None:
        found = await self._thread.run(self._select, "WHERE id = ?", (entry_id,))
        return found[0] if found else None

    async def recent(self, limit: int) -> list[Delivery]:
        """The newest entries first, whatever their state (for the API)."""
        return await self._thread.run(self._select, "ORDER BY id DESC LIMIT ?", (limit,))

    async def aclose(self) -> None:
        if self._db is not None:
            await self._thread.run(self._close)
        self._thread.shutdown()

    # In the store's thread

    def _open(self) -> None:
        # FULL: an entry is on disk before its message leaves, and so is its delivery.
        self._db = open_database(
            self.path, "the notification outbox", synchronous="FULL", prepare=self._prepare
        )

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.row_factory = sqlite3.Row
        db.executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: the notification outbox is not open")
        return self._db

    def _add(self, rows: list[tuple[str, str, bytes, str]], now: float) -> list[int]:
        db = self._connection()
        ids: list[int] = []
        with db:
            db.execute("BEGIN")
            for receiver, key, body, headers in rows:
                db.execute(
                    "INSERT OR IGNORE INTO notify_outbox (receiver, idempotency_key, body, "
                    "headers, created, next_attempt, state) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                    (receiver, key, body, headers, now, now),
                )
                found = db.execute(
                    "SELECT id FROM notify_outbox WHERE receiver = ? AND idempotency_key = ?",
                    (receiver, key),
                ).fetchone()
                ids.append(found["id"])
        return ids

    def _select(self, clause: str, params: tuple[Any, ...]) -> list[Delivery]:
        cursor = self._connection().execute(f"SELECT * FROM notify_outbox {clause}", params)
        return [_delivery(row) for row in cursor.fetchall()]

    def _next_attempt(self) -> float | None:
        query = f"SELECT MIN(next_attempt) FROM notify_outbox WHERE {_HEADS}"
        return self._connection().execute(query).fetchone()[0]

    def _record(self, entry_id: int, state: str, when: float | None, error: str | None) -> None:
        """One attempt more, and its outcome; only a pending entry changes (a delivered one
        stays delivered)."""
        db = self._connection()
        with db:
            db.execute("BEGIN")
            db.execute(
                "UPDATE notify_outbox SET attempts = attempts + 1, state = ?, "
                "next_attempt = COALESCE(?, next_attempt), last_error = COALESCE(?, last_error) "
                "WHERE id = ? AND state = 'pending'",
                (state, when, error, entry_id),
            )

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=row["id"],
        receiver=row["receiver"],
        idempotency_key=row["idempotency_key"],
        body=bytes(row["body"]),
        headers=json.loads(row["headers"]),
        created=row["created"],
        next_attempt=row["next_attempt"],
        attempts=row["attempts"],
        state=row["state"],
        last_error=row["last_error"],
    )
