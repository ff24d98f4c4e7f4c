"""Acknowledgements in a cluster: taken by any node, announced once to every node's clients.

The store's acknowledge is atomic in Redis (the first ack wins), so of several nodes acking
one alert at once exactly one sees the change, and only that one appends the `alert` event.
The producer, wherever it runs, copies acks into its firing alerts at its next tick.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from sse_monitor.alerts.alert import Alert
from sse_monitor.alerts.store import AlertStorage
from sse_monitor.bus.event import Event
from sse_monitor.clock import utc_now

log = structlog.get_logger("sse_monitor.cluster.acks")


class ClusterAcks:
    def __init__(self, store: AlertStorage, append: Callable[[Event], None]) -> None:
        self._store = store
        self._append = append

    async def acknowledge(self, alert_id: str, by: str, note: str | None) -> Alert | None:
        """The alert after the ack (the first ack stays), or None if there is no such alert."""
        found = await self._store.acknowledge(alert_id, by, note, utc_now())
        if found is None:
            return None
        alert, changed = found
        if changed:
            log.info("alert.acknowledged", id=alert.id, rule=alert.rule, by=by)
            data = {**alert.to_json(), "transition": "acknowledged"}
            self._append(Event("alert", data, durable=True))
        return alert
