"""The notifier: alert transitions in, outbox entries out.

The alert manager hands over each transition as it announces it (`submit` never waits: the tick
goes on). The notifier's own task routes it to its receivers, gathers it in the outbox (durable
from then on, and once only per receiver, alert and transition), and when a receiver's group
is due (`group_wait` after its first transition) closes the group into one message and wakes the
sender. A restart or a failover takes up what was gathered from the outbox, and offering the
alerts that still fire again (`offer_firing`) adds only what was never gathered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import replace

import structlog

from sse_monitor.alerts.alert import Alert
from sse_monitor.alerts.lifecycle import Transition
from sse_monitor.notify.group import NotificationGroup
from sse_monitor.notify.outbox import Gathered, NewDelivery, Outbox
from sse_monitor.notify.payloads import build_request
from sse_monitor.notify.receivers import NotifyConfig, Receiver
from sse_monitor.tasks import cancel_and_wait

log = structlog.get_logger("sse_monitor.notify")

MAX_WAITING = 10_000  # transitions not yet gathered (the outbox is away); past it, the oldest go
RETRY_SECONDS = 1.0  # after the outbox failed
PRUNE_EVERY_SECONDS = 3600.0


class Notifier:
    def __init__(
        self,
        config: NotifyConfig,
        outbox: Outbox,
        *,
        external_url: str,
        wake_sender: Callable[[], None],
        retention_seconds: float,
        firing: Callable[[], Collection[str]] = frozenset,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`firing()`: the ids of the alerts that fire now, whose transitions pruning keeps."""
        self._config = config
        self._receivers = {receiver.name: receiver for receiver in config.receivers}
        self._outbox = outbox
        self._external_url = external_url
        self._wake_sender = wake_sender
        self._retention = retention_seconds
        self._firing = firing
        self._clock = clock
        self._waiting: list[Gathered] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._pruned_at: float | None = None
        self.dropped = 0  # transitions lost because the outbox was away too long

    def submit(self, transition: Transition) -> None:
        """Route a transition and queue it for the outbox; never waits."""
        routes = self._config.routes_for(transition.alert, transition.kind)
        if not routes:
            return
        # A copy: the alert object goes on changing (acknowledged, resolved) after this moment.
        transition = Transition(transition.kind, replace(transition.alert))
        now = self._clock()
        for route in routes:
            self._waiting.append(Gathered(route.receiver.name, transition, now + route.group_wait))
        if len(self._waiting) > MAX_WAITING:
            lost = len(self._waiting) - MAX_WAITING
            del self._waiting[:lost]
            self.dropped += lost
            log.warning("notify.dropped", transitions=lost, reason="the outbox is unavailable")
        self._wake.set()

    def offer_firing(self, alerts: Iterable[Alert]) -> None:
        """The alerts that fire as production starts (restored from the store): their firing
        and acknowledgement, which the outbox takes only if it never had them."""
        for alert in alerts:
            self.submit(Transition("fired", alert))
            if alert.acknowledged:
                self.submit(Transition("acknowledged", alert))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifier")

    async def aclose(self) -> None:
        """Stop; what was submitted and not yet gathered is gathered first, if the outbox
        answers."""
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        with contextlib.suppress(Exception):
            await self._gather()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._gather()
                wait = await self._close_due_groups()
                await self._prune_now_and_then()
                self._recovered()
            except Exception as exc:  # the outbox is away (Redis down, disk full): retry
                self._failed(exc)
                wait = RETRY_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _gather(self) -> None:
        if not self._waiting:
            return
        taken, self._waiting = self._waiting, []
        try:
            await self._outbox.gather(taken)
        except BaseException:
            self._waiting[:0] = taken  # kept, in order, for the next try
            raise

    async def _close_due_groups(self) -> float:
        """Close every group that is due; the seconds until the next one is (at most 60)."""
        now = self._clock()
        wait = 60.0
        for receiver, due in (await self._outbox.closing()).items():
            if due > now:
                wait = min(wait, due - now)
                continue
            entry_id = await self._outbox.close_group(receiver, self._build)
            if entry_id is not None:
                log.info("notify.grouped", receiver=receiver, delivery=entry_id)
                self._wake_sender()
        return wait

    def _build(self, receiver_name: str, transitions: Sequence[Transition]) -> NewDelivery:
        """The message for a closed group (in the outbox's thread: pure, no I/O)."""
        group = NotificationGroup.of(receiver_name, transitions)
        # A receiver gone from the configuration since: a generic body the sender will refuse.
        receiver = self._receivers.get(receiver_name) or Receiver(receiver_name, "webhook", "")
        request = build_request(receiver, group, external_url=self._external_url)
        return NewDelivery(
            receiver_name,
            group.idempotency_key,
            request.body,
            request.headers,
            tuple((t.alert.id, t.kind) for t in transitions),
        )

    async def _prune_now_and_then(self) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        removed = await self._outbox.prune(self._clock() - self._retention, self._firing())
        if removed:
            log.info("notify.pruned", removed=removed)

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "notify.outbox_unavailable",
                store=self._outbox.path,
                error=str(exc),
                waiting=len(self._waiting),
            )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("notify.outbox_available", store=self._outbox.path)
