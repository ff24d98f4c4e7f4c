"""Notification outboxes on a backend of the test's, SQLite or Redis: every outbox made shares
it with the others, as a restarted process shares its file and the nodes of a cluster their
Redis (each outbox its own client). And the transitions and entries to put in them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sse_monitor.alerts.alert import Alert
from sse_monitor.alerts.lifecycle import Transition
from sse_monitor.notify.outbox import Gathered, NewDelivery, Outbox
from sse_monitor.notify.redis_outbox import RedisOutbox
from sse_monitor.notify.sqlite_outbox import SqliteOutbox
from tests.support.store_backends import Backend

PREFIX = "test-cluster"
TIMEOUT = 2.0  # every Redis call's bound in these tests
NOW = 1_800_000_000.0


class Clock:
    """Wall-clock seconds a test sets."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Outboxes(Backend):
    """`Outboxes("sqlite", path, clock)` or `Outboxes("redis", url, clock)`; `opened()` gives one
    more outbox, open. Leaving the `async with` closes every outbox and client made."""

    def __init__(self, kind: str, where: str, clock: Clock, **client_options: Any) -> None:
        super().__init__(kind, where, **client_options)
        self.clock = clock

    async def opened(
        self, *, token: str | None = None, prefix: str = PREFIX, timeout: float = TIMEOUT
    ) -> Outbox:
        """One more outbox; on Redis, fenced by `token` (None: unfenced)."""
        outbox: Outbox
        if self.kind == "sqlite":
            outbox = SqliteOutbox(self.where, clock=self.clock)
        else:
            outbox = RedisOutbox(
                self.client(), prefix, token=token, timeout=timeout, clock=self.clock
            )
        await self.made(outbox).open()
        return outbox


def entry(receiver: str, key: str, body: bytes = b"{}") -> NewDelivery:
    return NewDelivery(receiver, key, body, {"content-type": "application/json"})


def transition(alert_id: str, kind: str = "fired", rule: str = "cpu_high") -> Transition:
    alert = Alert(
        id=alert_id,
        rule=rule,
        subject=None,
        metric="cpu_percent",
        severity="warning",
        state="resolved" if kind == "resolved" else "firing",
        message=f"{rule} {alert_id} {kind}",
        value=91.5,
        threshold=90,
        started_at="2027-01-15T08:00:00.000000+00:00",
        resolved_at="2027-01-15T08:05:00.000000+00:00" if kind == "resolved" else None,
    )
    return Transition(kind, alert)


def gathered(receiver: str, alert_id: str, kind: str = "fired", due: float = NOW) -> Gathered:
    return Gathered(receiver, transition(alert_id, kind), due)


def build(receiver: str, transitions: Sequence[Transition]) -> NewDelivery:
    """A body naming the transitions in order, as the notifier's builder does."""
    pairs = tuple((t.alert.id, t.kind) for t in transitions)
    body = json.dumps([[t.alert.id, t.kind, t.alert.message] for t in transitions]).encode()
    return NewDelivery(receiver, f"key-{'-'.join(a + k for a, k in pairs)}", body, {}, pairs)
