"""A group: the alert transitions of one receiver gathered within `group_wait`, sent as one."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sse_monitor.alerts.lifecycle import Transition


@dataclass(frozen=True, slots=True)
class NotificationGroup:
    id: str  # the outbox's id for the group
    receiver: str  # the receiver's name
    transitions: tuple[Transition, ...]  # in the order they happened

    @classmethod
    def of(cls, receiver: str, transitions: Sequence[Transition]) -> NotificationGroup:
        """A group named by its idempotency key: the same transitions, the same id."""
        key = cls("", receiver, tuple(transitions)).idempotency_key
        return cls(key[:16], receiver, tuple(transitions))

    @property
    def idempotency_key(self) -> str:
        """The same for every retry, and after a restart for the same transitions: a receiver
        that saw it already can drop the repeat (the process died between its 2xx and our record
        of it). Made of what was sent, so regrouping the same transitions keeps it."""
        digest = hashlib.sha256(self.receiver.encode())
        for transition in self.transitions:
            digest.update(f"\n{transition.alert.id}:{transition.kind}".encode())
        return digest.hexdigest()[:32]


def transition_time(transition: Transition) -> str | None:
    """When the transition happened, from the alert as it was then."""
    alert = transition.alert
    if transition.kind == "fired":
        return alert.started_at
    if transition.kind == "acknowledged":
        return alert.acknowledged_at
    return alert.resolved_at
