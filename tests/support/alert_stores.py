"""Alert stores on a backend of the test's, SQLite or Redis: every store made shares it with the
others, as the nodes of a cluster share their Redis (each store its own client). And alerts to
keep in them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Self

import redis.asyncio as redis

from sse_monitor.alerts.alert import Alert, stamp
from sse_monitor.alerts.redis_store import RedisAlertStore
from sse_monitor.alerts.store import AlertStorage, AlertStore

PREFIX = "test-cluster"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # the tests' present


def alert(
    alert_id: str,
    *,
    state: str,
    started: timedelta,
    resolved: timedelta | None,
    severity: str = "warning",
) -> Alert:
    """An alert that started `started` before NOW (and resolved `resolved` before it)."""
    return Alert(
        id=alert_id,
        rule="r",
        subject=None,
        metric="kato.status",
        severity=severity,
        state=state,
        message="m",
        value={"nested": [1, 2.5, "x"]},
        threshold="degraded",
        started_at=stamp(NOW - started),
        resolved_at=stamp(NOW - resolved) if resolved is not None else None,
    )


class AlertStores:
    """`AlertStores("sqlite", path)` or `AlertStores("redis", url)`; `make()` gives one more
    store, not opened yet. Leaving the `async with` closes every store and client made."""

    def __init__(self, kind: str, where: str, **client_options: Any) -> None:
        self.kind = kind
        self.where = where
        self._client_options = {"socket_timeout": 2, "socket_connect_timeout": 2}
        self._client_options.update(client_options)
        self._stores: list[AlertStorage] = []
        self.clients: list[redis.Redis] = []

    def make(self, prefix: str = PREFIX) -> AlertStorage:
        store: AlertStorage
        if self.kind == "sqlite":
            store = AlertStore(self.where)
        else:
            client = redis.from_url(self.where, **self._client_options)
            self.clients.append(client)
            store = RedisAlertStore(client, prefix=prefix)
        self._stores.append(store)
        return store

    async def opened(self, prefix: str = PREFIX) -> AlertStorage:
        store = self.make(prefix)
        await store.open()
        return store

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for store in self._stores:
            await store.aclose()
        for client in self.clients:
            await client.aclose()
