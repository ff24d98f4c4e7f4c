"""The notification outbox in SQLite: every transition is gathered, and every message to a
receiver recorded, in one transaction before anything is sent; a message's fate (delivered, to
retry at, failed) is recorded as soon as it is known. A restart resumes the pending ones; a
delivered one is never sent again.

Entries name their receiver, not its URL: a receiver's URL is often its secret (a Slack webhook),
and it stays in the configuration, out of this file and of the API. Every statement runs in the
store's own thread. The file may be the alert store's (SSE_MONITOR_DB): the tables are separate,
and `user_version` is left to the alert store.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from sse_monitor.notify.outbox import (
    GATHERING,
    BuildEntry,
    Delivery,
    Gathered,
    NewDelivery,
    Notice,
    transition_from_json,
    transition_to_json,
)
from sse_monitor.settings import StoreError
from sse_monitor.store_thread import StoreThread, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    alerts TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    next_attempt REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    last_error TEXT,
    UNIQUE (receiver, idempotency_key)
);
CREATE INDEX IF NOT EXISTS notify_outbox_queue ON notify_outbox (state, receiver, id);
CREATE TABLE IF NOT EXISTS notify_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    transition TEXT NOT NULL,
    recorded REAL NOT NULL,
    due REAL NOT NULL,
    entry_id INTEGER,
    UNIQUE (receiver, alert_id, kind)
);
CREATE INDEX IF NOT EXISTS notify_transitions_gathering
    ON notify_transitions (entry_id, receiver, id);
CREATE INDEX IF NOT EXISTS notify_transitions_alert ON notify_transitions (alert_id, id);
"""

# The oldest pending entry of each receiver: a receiver gets its messages in the order they were
# recorded (a resolve never overtakes its firing), and one that is down holds back only its own.
_HEADS = """
state = 'pending' AND id = (
    SELECT MIN(id) FROM notify_outbox AS queue
    WHERE queue.receiver = notify_outbox.receiver AND queue.state = 'pending'
)
"""

_ADD = (
    "INSERT OR IGNORE INTO notify_outbox (receiver, idempotency_key, body, headers, alerts, "
    "created, next_attempt, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')"
)

Row = tuple[str, str, bytes, str, str]


class SqliteOutbox:
    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._thread = StoreThread("notify-outbox")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._thread.run(self._open)

    async def aclose(self) -> None:
        if self._db is not None:
            await self._thread.run(self._close)
        self._thread.shutdown()

    def check(self) -> None:
        """Open and close the file: a bad path is a configuration error before anything runs."""
        open_database(
            self.path, "the notification outbox", synchronous="FULL", prepare=self._prepare
        ).close()

    async def gather(self, items: Iterable[Gathered]) -> list[Gathered]:
        items = list(items)
        if not items:
            return []
        return await self._thread.run(self._gather, items, self._clock())

    async def closing(self) -> dict[str, float]:
        return await self._thread.run(self._closing)

    async def close_group(self, receiver: str, build: BuildEntry) -> int | None:
        return await self._thread.run(self._close_group, receiver, build, self._clock())

    async def add(self, entries: Iterable[NewDelivery]) -> list[int]:
        """Record the entries, all or none, due at once; their ids, in order. An entry whose
        receiver and idempotency key are already recorded is not added again (its id is)."""
        rows = [_row(entry) for entry in entries]
        if not rows:
            return []
        return await self._thread.run(self._add_all, rows, self._clock())

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

    async def notices(self, alert_ids: Collection[str]) -> dict[str, list[Notice]]:
        ids = list(dict.fromkeys(alert_ids))
        if not ids:
            return {}
        return await self._thread.run(self._notices, ids)

    async def prune(self, before: float, keep: Collection[str]) -> int:
        return await self._thread.run(self._prune, before, list(keep))

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

    def _gather(self, items: list[Gathered], now: float) -> list[Gathered]:
        db = self._connection()
        new: list[Gathered] = []
        with db:
            db.execute("BEGIN")
            for item in items:
                receiver, alert_id, kind = item.key
                cursor = db.execute(
                    "INSERT OR IGNORE INTO notify_transitions (receiver, alert_id, kind, "
                    "transition, recorded, due) VALUES (?, ?, ?, ?, ?, ?)",
                    (receiver, alert_id, kind, transition_to_json(item.transition), now, item.due),
                )
                if cursor.rowcount:
                    new.append(item)
        return new

    def _closing(self) -> dict[str, float]:
        rows = self._connection().execute(
            "SELECT receiver, MIN(due) AS due FROM notify_transitions "
            "WHERE entry_id IS NULL GROUP BY receiver"
        )
        return {row["receiver"]: row["due"] for row in rows}

    def _close_group(self, receiver: str, build: BuildEntry, now: float) -> int | None:
        db = self._connection()
        with db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                "SELECT id, transition FROM notify_transitions "
                "WHERE entry_id IS NULL AND receiver = ? ORDER BY id",
                (receiver,),
            ).fetchall()
            if not rows:
                return None
            entry = build(receiver, [transition_from_json(row["transition"]) for row in rows])
            entry_id = self._add(db, _row(entry), now)
            db.executemany(
                "UPDATE notify_transitions SET entry_id = ? WHERE id = ?",
                [(entry_id, row["id"]) for row in rows],
            )
        return entry_id

    def _add_all(self, rows: list[Row], now: float) -> list[int]:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            return [self._add(db, row, now) for row in rows]

    @staticmethod
    def _add(db: sqlite3.Connection, row: Row, now: float) -> int:
        db.execute(_ADD, (*row, now, now))
        found = db.execute(
            "SELECT id FROM notify_outbox WHERE receiver = ? AND idempotency_key = ?", row[:2]
        ).fetchone()
        return int(found["id"])

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

    def _notices(self, alert_ids: list[str]) -> dict[str, list[Notice]]:
        found: dict[str, list[Notice]] = {}
        marks = ",".join("?" * len(alert_ids))
        rows = self._connection().execute(
            "SELECT t.alert_id, t.receiver, t.kind, o.state, o.attempts, o.last_error "
            "FROM notify_transitions AS t LEFT JOIN notify_outbox AS o ON o.id = t.entry_id "
            f"WHERE t.alert_id IN ({marks}) "
            # an entry pruned (a long-firing alert's old message) is not shown as gathering
            "AND (t.entry_id IS NULL OR o.id IS NOT NULL) ORDER BY t.id",
            alert_ids,
        )
        for row in rows:
            notice = Notice(
                row["receiver"],
                row["kind"],
                row["state"] or GATHERING,
                row["attempts"] or 0,
                row["last_error"],
            )
            found.setdefault(row["alert_id"], []).append(notice)
        return found

    def _prune(self, before: float, keep: list[str]) -> int:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            db.execute("CREATE TEMP TABLE IF NOT EXISTS notify_keep (alert_id TEXT PRIMARY KEY)")
            db.execute("DELETE FROM notify_keep")
            db.executemany("INSERT OR IGNORE INTO notify_keep VALUES (?)", [(k,) for k in keep])
            removed = db.execute(
                "DELETE FROM notify_outbox WHERE state != 'pending' AND created < ?", (before,)
            ).rowcount
            db.execute(
                "DELETE FROM notify_transitions WHERE recorded < ? "
                "AND alert_id NOT IN (SELECT alert_id FROM notify_keep) "
                "AND entry_id IS NOT NULL AND entry_id NOT IN (SELECT id FROM notify_outbox)",
                (before,),
            )
            db.execute("DELETE FROM notify_keep")
        return removed

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _row(entry: NewDelivery) -> Row:
    return (
        entry.receiver,
        entry.idempotency_key,
        entry.body,
        json.dumps(dict(entry.headers)),
        json.dumps([list(pair) for pair in entry.alerts]),
    )


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
        alerts=tuple((alert_id, kind) for alert_id, kind in json.loads(row["alerts"])),
    )
