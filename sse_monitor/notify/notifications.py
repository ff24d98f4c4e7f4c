"""Notifications as a producer runs them: a notifier filling the outbox and a sender emptying
it, started and stopped with the producer (in a cluster, with each term of leadership).

Each attempt's outcome is announced as a `notification` event (durable: a client that resumes
still hears of it), so the alerts panel shows live where each alert was sent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from sse_monitor.alerts.alert import Alert
from sse_monitor.alerts.lifecycle import Transition
from sse_monitor.bus.event import Event
from sse_monitor.notify.notifier import Notifier
from sse_monitor.notify.outbox import Delivery, Outbox
from sse_monitor.notify.receivers import NotifyConfig
from sse_monitor.notify.sender import DeliveryCounts, Sender


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
            wake_sender=self.sender.wake,
            retention_seconds=retention_seconds,
            firing=firing,
        )

    def submit(self, transition: Transition) -> None:
        self.notifier.submit(transition)

    def offer_firing(self, alerts: Iterable[Alert]) -> None:
        self.notifier.offer_firing(alerts)

    def start(self) -> None:
        self.notifier.start()
        self.sender.start()

    async def aclose(self) -> None:
        await self.notifier.aclose()
        await self.sender.aclose()

    def _announce(self, entry: Delivery, state: str, error: str | None) -> None:
        data = {
            "id": entry.id,
            "receiver": entry.receiver,
            "state": state,
            "attempts": entry.attempts + 1,
            "last_error": error,
            "alerts": [{"id": alert_id, "transition": kind} for alert_id, kind in entry.alerts],
        }
        self._append(Event("notification", data, durable=True))
