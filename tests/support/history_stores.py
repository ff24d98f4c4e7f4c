"""History stores on a backend of the test's, SQLite or Redis: every store made shares it with
the others, as a restarted process shares its file and the nodes of a cluster their Redis (each
store its own client)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import redis.asyncio as redis

from sse_monitor.history.buckets import TIERS, Tier
from sse_monitor.history.redis_store import RedisHistory
from sse_monitor.history.sqlite_store import SqliteHistory
from sse_monitor.history.store import HistoryStore

PREFIX = "test-cluster"
TIMEOUT = 2.0  # every Redis call's bound in these tests


class HistoryStores:
    """`HistoryStores("sqlite", path)` or `HistoryStores("redis", url)`; `opened()` gives one
    more store, open. Leaving the `async with` closes every store and client made."""

    def __init__(self, kind: str, where: str, **client_options: Any) -> None:
        self.kind = kind
        self.where = where
        self._client_options = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
        self._client_options.update(client_options)
        self._stores: list[HistoryStore] = []
        self.clients: list[redis.Redis] = []

    async def opened(self, tiers: Sequence[Tier] = TIERS, prefix: str = PREFIX) -> HistoryStore:
        store: HistoryStore
        if self.kind == "sqlite":
            store = SqliteHistory(self.where, tiers)
        else:
            store = RedisHistory(self.client(), prefix, tiers, timeout=TIMEOUT)
        self._stores.append(store)
        await store.open()
        return store

    def client(self) -> redis.Redis:
        """A new client of the backend's Redis, closed with the rest."""
        client = redis.from_url(self.where, **self._client_options)
        self.clients.append(client)
        return client

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for store in self._stores:
            await store.aclose()  # a second time for those a test closed: nothing to do
        for client in self.clients:
            await client.aclose()
