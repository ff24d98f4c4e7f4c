"""Alert stores on a backend of the test's, SQLite or Redis: every store made shares it with the
others, as the nodes of a cluster share their Redis (each store its own client). And alerts to
keep in them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sse_monitor.alerts.alert import Alert, stamp
from sse_monitor.alerts.redis_store import RedisAlertStore
from sse_monitor.alerts.store import AlertStorage, AlertStore
from tests.support.store_backends import Backend

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


class AlertStores(Backend):
    """`AlertStores("sqlite", path)` or `AlertStores("redis", url)`; `make()` gives one more
    store, not opened yet. Leaving the `async with` closes every store and client made."""

    def make(self, prefix: str = PREFIX) -> AlertStorage:
        store: AlertStorage
        if self.kind == "sqlite":
            store = AlertStore(self.where)
        else:
            store = RedisAlertStore(self.client(), prefix=prefix)
        return self.made(store)

    async def opened(self, prefix: str = PREFIX) -> AlertStorage:
        store = self.make(prefix)
        await store.open()
        return store
