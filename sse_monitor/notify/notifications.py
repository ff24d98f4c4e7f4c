"""Notifications as a producer runs them: a notifier filling the outbox and a sender emptying
it, started and stopped with the producer (in a cluster, with each term of leadership).

Each attempt's outcome is announced as a `notification` event (durable: a client that resumes
still hears of it), so the alerts panel shows live where each alert was sent; and where the
firing alerts' notifications stand is a `notifications` state event (the newest reaches every
new client: a page opened later shows it too), refreshed after every change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from sse_monitor.alerts.alert import Alert, stamp
from sse_monitor.alerts.lifecycle import Transition
from sse_monitor.bus.event import Event
from sse_monitor.notify.notifier import Notifier
from sse_monitor.notify.outbox import Delivery, Outbox
from sse_monitor.notify.receivers import NotifyConfig
from sse_monitor.notify.sender import DeliveryCounts, Sender
from sse_monitor.tasks import cancel_and_wait

REFRESH_EVERY_SECONDS = 1.0  # at most this often: a burst of outcomes is one state event
RETRY_SECONDS = 1.0  # after the outbox did not answer
ANNOUNCED_RETRIES = 3  # a message's failed attempts announced as events (then its end)


class Notifications:
    def __init__(
        self,
        config: NotifyConfig,
        outbox: Outbox,
        append: Callable[[Event], None],
        *,
        external_url: str,
        retry_for: float,
        retention_seconds: float,
        counts: DeliveryCounts,
        firing: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self._append = append
        self._outbox = outbox
        self._firing = firing
        self._changed = asyncio.Event()  # what the state event says may have changed
        self._told: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.sender = Sender(
            outbox,
            config.receivers,
            give_up_after=retry_for,
            counts=counts,
            outcome=self._announce,
        )
        self.notifier = Notifier(
            config,
            outbox,
            external_url=external_url,
            wake_sender=self._grouped,
            retention_seconds=retention_seconds,
            firing=firing,
        )

    def submit(self, transition: Transition) -> None:
        self.notifier.submit(transition)
        self._changed.set()

    def offer_firing(self, alerts: Iterable[Alert]) -> None:
        self.notifier.offer_firing(alerts)

    def start(self) -> None:
        self.notifier.start()
        self.sender.start()
        self._changed.set()
        self._task = asyncio.create_task(self._tell_state(), name="notifications-state")

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        await self.notifier.aclose()
        await self.sender.aclose()

    def _grouped(self) -> None:
        """A group closed into a message: send it, and say it is on its way."""
        self.sender.wake()
        self._changed.set()

    async def _tell_state(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                alerts = await self._outbox.notices(self._firing())
            except Exception:  # the outbox is away (the notifier says so): try again later
                self._changed.set()
                await asyncio.sleep(RETRY_SECONDS)
                continue
            data = {alert_id: [n.to_json() for n in found] for alert_id, found in alerts.items()}
            if data != self._told:
                self._told = data
                now = stamp(datetime.now(UTC))
                self._append(Event("notifications", {"timestamp": now, "alerts": data}))
            await asyncio.sleep(REFRESH_EVERY_SECONDS)

    def _announce(self, entry: Delivery, state: str, error: str | None) -> None:
        """A `notification` event for the outcome, but for a retry only the first few: a dead
        receiver retried for a day would otherwise push the `alert` events out of the history
        a client resumes from. Later attempts still reach the page in the state event."""
        self._changed.set()
        if state == "pending" and entry.attempts + 1 > ANNOUNCED_RETRIES:
            return
        data = {
            "id": entry.id,
            "receiver": entry.receiver,
            "state": state,
            "attempts": entry.attempts + 1,
            "last_error": error,
            "alerts": [{"id": alert_id, "transition": kind} for alert_id, kind in entry.alerts],
        }
        self._append(Event("notification", data, durable=True))
