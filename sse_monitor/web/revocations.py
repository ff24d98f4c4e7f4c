"""Login cookies ended by `POST /logout`, refused until they would have expired anyway.

A cookie is named by its signature (an HMAC over its role and expiry, so unique to it). The
set lives in memory, so a request pays one dict lookup and no I/O; it is also written to the
SQLite file SSE_MONITOR_DB (a table of its own beside the alerts), from a dedicated thread as
the alert store does, and read back at start-up, so a restart does not bring a revoked cookie
back. Entries are dropped once their cookie has expired. Only a valid cookie can be revoked,
which takes a valid token to obtain, so junk cannot fill the set; a cap bounds it all the same.

`Revocations` is the interface `Access` uses: in cluster mode `RedisRevocations`
(`sse_monitor.web.revocations_redis`) stands in for `SQLiteRevocations`, and its answer may
take a call to Redis, hence `is_revoked` is a coroutine.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import structlog

from sse_monitor.settings import StoreError

log = structlog.get_logger("sse_monitor.web.revocations")

T = TypeVar("T")

# Logins are cheap for whoever holds a token; past this many live revocations the one whose
# cookie expires first is forgotten (and a warning logged) rather than memory growing forever.
MAX_REVOKED = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS revoked_sessions (
    signature TEXT PRIMARY KEY,
    expires INTEGER NOT NULL
);
"""


class Revocations(Protocol):
    async def open(self) -> None: ...

    async def is_revoked(self, signature: str) -> bool: ...

    async def revoke(self, signature: str, expires: int) -> None: ...

    async def aclose(self) -> None: ...


class RevokedSet:
    """Revoked signatures in memory with their cookie's expiry (epoch seconds): at most
    `max_revoked`, forgetting the one whose cookie expires first when full."""

    def __init__(self, max_revoked: int = MAX_REVOKED) -> None:
        self.max_revoked = max_revoked
        self._expiries: dict[str, int] = {}

    def __contains__(self, signature: str) -> bool:
        return signature in self._expiries

    def __len__(self) -> int:
        return len(self._expiries)

    def load(self, expiries: dict[str, int]) -> None:
        self._expiries.update(expiries)

    def add(self, signature: str, expires: int, now: int) -> None:
        """Add it, first dropping what has expired (and if still full, the soonest to)."""
        self._prune(now)
        if len(self._expiries) >= self.max_revoked:
            forgotten = min(self._expiries, key=self._expiries.__getitem__)
            del self._expiries[forgotten]
            log.warning("revocations.full", max_revoked=self.max_revoked)
        self._expiries[signature] = expires

    def _prune(self, now: int) -> None:
        for signature in [s for s, expires in self._expiries.items() if expires < now]:
            del self._expiries[signature]


class SQLiteRevocations:
    def __init__(
        self,
        path: str,
        *,
        max_revoked: int = MAX_REVOKED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._clock = clock
        self._revoked = RevokedSet(max_revoked)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="revocations")
        self._db: sqlite3.Connection | None = None

    async def is_revoked(self, signature: str) -> bool:
        return signature in self._revoked

    async def open(self) -> None:
        """Load the revocations still in force (and delete the others)."""
        self._revoked.load(await self._run(self._open, int(self._clock())))
        log.info("revocations.loaded", count=len(self._revoked))

    async def revoke(self, signature: str, expires: int) -> None:
        """Refused from now on (before the write), and on disk when this returns, unless the
        disk fails: then in memory only, and logged."""
        now = int(self._clock())
        if expires < now or signature in self._revoked:
            return
        self._revoked.add(signature, expires, now)
        try:
            await self._run(self._write, signature, expires, now)
        except (sqlite3.Error, StoreError) as exc:
            # The logout still holds in this process; only a restart would forget it. The
            # client is not to blame (no 500 for it): ours to log.
            log.error("revocations.write_failed", path=self.path, error=str(exc))

    async def aclose(self) -> None:
        if self._db is not None:
            await self._run(self._close)
        self._executor.shutdown(wait=True)

    # In the store's thread

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _open(self, now: int) -> dict[str, int]:
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 5000")
            db.executescript(SCHEMA)
            db.execute("DELETE FROM revoked_sessions WHERE expires < ?", (now,))
            rows = db.execute(
                "SELECT signature, expires FROM revoked_sessions ORDER BY expires DESC LIMIT ?",
                (self._revoked.max_revoked,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the revocations: {exc}") from None
        self._db = db
        return dict(rows)

    def _write(self, signature: str, expires: int, now: int) -> None:
        if self._db is None:
            raise StoreError(f"{self.path}: the revocations are not open")
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM revoked_sessions WHERE expires < ?", (now,))
            self._db.execute(
                "INSERT OR REPLACE INTO revoked_sessions (signature, expires) VALUES (?, ?)",
                (signature, expires),
            )

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
