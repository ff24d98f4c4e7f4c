"""History stores on a backend of the test's, SQLite or Redis: every store made shares it with
the others, as a restarted process shares its file and the nodes of a cluster their Redis (each
store its own client)."""

from __future__ import annotations

from collections.abc import Sequence

from sse_monitor.history.buckets import TIERS, Tier
from sse_monitor.history.redis_store import RedisHistory
from sse_monitor.history.sqlite_store import SqliteHistory
from sse_monitor.history.store import HistoryStore
from tests.support.store_backends import Backend

PREFIX = "test-cluster"
TIMEOUT = 2.0  # every Redis call's bound in these tests


class HistoryStores(Backend):
    """`HistoryStores("sqlite", path)` or `HistoryStores("redis", url)`; `opened()` gives one
    more store, open. Leaving the `async with` closes every store and client made."""

    async def opened(self, tiers: Sequence[Tier] = TIERS, prefix: str = PREFIX) -> HistoryStore:
        store: HistoryStore
        if self.kind == "sqlite":
            store = SqliteHistory(self.where, tiers)
        else:
            store = RedisHistory(self.client(), prefix, tiers, timeout=TIMEOUT)
        await self.made(store).open()
        return store
