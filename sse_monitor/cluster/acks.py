"""Acknowledgements in a cluster: taken by any node, announced once to every node's clients.

The store's acknowledge is atomic in Redis (the first ack wins), so of several nodes acking
one alert at once exactly one sees the change, and only that one appends the `alert` event.
The producer, wherever it runs, copies acks into its firing alerts at its next tick.
"""

from __future__ import annotations

import structlog

from sse_monitor.alerts.alert import Alert
from sse_monitor.alerts.store import AlertStorage, StoreUnavailable
from sse_monitor.bus.event import Event
from sse_monitor.bus.log import EventLog
from sse_monitor.clock import utc_now

log = structlog.get_logger("sse_monitor.cluster.acks")


class ClusterAcks:
    def __init__(self, store: AlertStorage, event_log: EventLog, *, history_size: int) -> None:
        self._store = store
        self._log = event_log
        self._history_size = history_size
        self._unsure: set[str] = set()  # acks that failed here: Redis may have taken them

    async def acknowledge(self, alert_id: str, by: str, note: str | None) -> Alert | None:
        """The alert after the ack (the first ack stays), or None if there is no such alert."""
        try:
            found = await self._store.acknowledge(alert_id, by, note, utc_now())
        except StoreUnavailable:
            if len(self._unsure) < 10_000:
                self._unsure.add(alert_id)
            raise
        if found is None:
            return None
        alert, changed = found
        unsure = alert_id in self._unsure
        self._unsure.discard(alert_id)
        if changed or (
            unsure and alert.acknowledged_by == by and not await self._announced(alert_id)
        ):
            # Not changed, but by this name and never announced: an earlier try of this ack
            # was taken by Redis after we gave up waiting (a 503), so it is announced now.
            log.info("alert.acknowledged", id=alert.id, rule=alert.rule, by=by)
            data = {**alert.to_json(), "transition": "acknowledged"}
            self._log.append(Event("alert", data, durable=True))
        return alert

    async def _announced(self, alert_id: str) -> bool:
        return any(
            frame.event.name == "alert"
            and frame.event.data.get("id") == alert_id
            and frame.event.data.get("transition") == "acknowledged"
            for frame in await self._log.recent(self._history_size)
        )
