"""What the notifier and the sender need of an outbox: SQLite in one process
(sqlite_outbox.py), Redis in a cluster (redis_outbox.py), with the same results.

Two stages, both durable. A transition routed to a receiver is first *gathered* (once: the same
receiver, alert and transition are never gathered twice, which is what makes a restart or a
failover that offers them again harmless). When the receiver's group closes, its gathered
transitions become one *entry*: a message with its final body, sent by the sender until it is
delivered, refused, or too old. Times are wall-clock seconds since the epoch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sse_monitor.alerts.alert import Alert
from sse_monitor.alerts.lifecycle import Transition

STATES = ("pending", "delivered", "failed")
GATHERING = "gathering"  # a transition's state before its group closes


class OutboxUnavailable(Exception):
    """The outbox did not answer in time, or refused (Redis down): the call may succeed later.
    The message names the store, never a password."""


class OutboxFenced(OutboxUnavailable):
    """A cluster's producer wrote with a fencing token that no longer holds the lease: it is
    not the producer any more, and wrote nothing."""


@dataclass(frozen=True, slots=True)
class Gathered:
    """A transition for one receiver, waiting for its group to close at `due`."""

    receiver: str
    transition: Transition
    due: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.receiver, self.transition.alert.id, self.transition.kind)


@dataclass(frozen=True)
class NewDelivery:
    """A message for one receiver, as the notifier makes it: its body is final (signed), and its
    idempotency key, also in the body, stays the same across every attempt. `alerts` are the
    (alert id, transition) pairs it tells of."""

    receiver: str
    idempotency_key: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    alerts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Delivery:
    """An entry of the outbox, as recorded."""

    id: int
    receiver: str
    idempotency_key: str
    body: bytes
    headers: dict[str, str]
    created: float
    next_attempt: float
    attempts: int
    state: str
    last_error: str | None
    alerts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Notice:
    """Where one transition of an alert was sent, for the alerts panel: its entry's state, or
    `gathering` before its group closed."""

    receiver: str
    transition: str
    state: str
    attempts: int = 0
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "transition": self.transition,
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


BuildEntry = Callable[[str, Sequence[Transition]], NewDelivery]


class Outbox(Protocol):
    path: str  # where it is, for the log (never a password)

    async def open(self) -> None: ...
    async def aclose(self) -> None: ...

    async def gather(self, items: Iterable[Gathered]) -> list[Gathered]:
        """Record each item not recorded before (by receiver, alert id and transition), all or
        none; the ones that were new."""
        ...

    async def closing(self) -> dict[str, float]:
        """Each receiver with gathered transitions, and when its group closes (its earliest
        `due`)."""
        ...

    async def close_group(self, receiver: str, build: BuildEntry) -> int | None:
        """The receiver's gathered transitions, in the order gathered, become one entry built
        by `build(receiver, transitions)`, in one step; its id (None if nothing was
        gathered)."""
        ...

    async def add(self, entries: Iterable[NewDelivery]) -> list[int]: ...
    async def due(self, now: float, limit: int) -> list[Delivery]: ...
    async def next_attempt(self) -> float | None: ...
    async def delivered(self, entry_id: int) -> None: ...
    async def retry_at(self, entry_id: int, when: float, error: str) -> None: ...
    async def failed(self, entry_id: int, error: str) -> None: ...
    async def get(self, entry_id: int) -> Delivery | None: ...
    async def recent(self, limit: int) -> list[Delivery]: ...

    async def notices(self, alert_ids: Collection[str]) -> dict[str, list[Notice]]:
        """Where each alert's transitions went, in the order gathered."""
        ...

    async def prune(self, before: float, keep: Collection[str]) -> int:
        """Forget entries delivered or failed before `before`, and the transitions of alerts
        not in `keep` (those still firing) gathered before it; how many entries went."""
        ...


def transition_to_json(transition: Transition) -> str:
    """A transition as gathered: the alert as it was at that moment."""
    return json.dumps({"kind": transition.kind, "alert": transition.alert.to_json()})


def transition_from_json(text: str | bytes) -> Transition:
    data = json.loads(text)
    return Transition(data["kind"], Alert(**data["alert"]))
