"""KATO's active session count, from two channels: pushes (fast, with the session's identity,
but incomplete) and polls (late, but the truth). Each change is counted once.

A push moves the count at once and says which session it was. A poll is compared with what the
pushes implied *at the moment KATO answered it*: pushes stamped after that moment are not in
the polled count yet, pushes stamped before it are. What is left over is a change no push
reported (a session expired by TTL, or created through a KATO worker whose pushes we do not
see), published as one corrective event with the net change. A push stamped before a poll that
was already reconciled arrives too late to count: the poll has counted it.

Times are KATO's own (its push and /health timestamps: one machine's clock) when both sides
have one, and the gateway's otherwise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sse_monitor.bus.event import Event
from sse_monitor.clock import iso
from sse_monitor.sources.kato_push import PushedChange

CREATED, DESTROYED = "session_created", "session_destroyed"


class SessionTracker:
    """The published count, and the pushes not yet confirmed by a poll."""

    def __init__(self, count: int | None = None) -> None:
        self.count = count  # the last announced count, or None: the first known is the baseline
        self._last_event_at: datetime | None = None
        # (kato_time, received_at, delta) of each push since the last reconciled poll
        self._unconfirmed: deque[tuple[datetime | None, datetime, int]] = deque()
        self._reconciled_kato: datetime | None = None  # KATO time of the last reconciled poll
        self.pushes_late = 0  # pushes a poll had already counted

    def observe(
        self, count: int | None, now: datetime, kato_time: datetime | None = None
    ) -> dict[str, Any] | None:
        """A polled count (or the count of a push channel's snapshot): the truth at `kato_time`.

        The first known count is the baseline. An unknown count (a failed poll) is not zero:
        nothing changes, and the next known count is compared with the last known one.
        """
        if count is None:
            return None
        if self.count is None:
            self.count = count
            self._confirm(kato_time, now)
            return None
        not_yet_polled = sum(
            delta
            for pushed_kato, received, delta in self._unconfirmed
            if _after(pushed_kato, received, kato_time, now)
        )
        self._confirm(kato_time, now)
        difference = count - (self.count - not_yet_polled)
        if difference == 0:
            return None
        return self._change(difference, now, {"source": "poll"})

    def pushed(self, change: PushedChange) -> dict[str, Any] | None:
        """A push: the count moves now, unless a poll already counted this change."""
        if self.count is None:
            return None  # no baseline yet: the first poll or snapshot will give it
        if self._already_polled(change):
            self.pushes_late += 1
            return None
        delta = 1 if change.created else -1
        if self.count + delta < 0:
            return None  # cannot be: the next poll will say what is true
        self._unconfirmed.append((change.kato_time, change.received_at, delta))
        identity: dict[str, Any] = {
            "source": "push",
            "session_id": change.session_id,
            "node_id": change.node_id,
        }
        if not change.created:
            identity["reason"] = change.reason
        return self._change(delta, change.received_at, identity)

    def _already_polled(self, change: PushedChange) -> bool:
        if self._reconciled_kato is not None and change.kato_time is not None:
            return change.kato_time <= self._reconciled_kato
        return False

    def _confirm(self, kato_time: datetime | None, now: datetime) -> None:
        """Everything up to this poll is now in the count."""
        self._reconciled_kato = kato_time
        self._unconfirmed = deque(
            entry for entry in self._unconfirmed if _after(entry[0], entry[1], kato_time, now)
        )

    def _change(self, delta: int, now: datetime, extra: dict[str, Any]) -> dict[str, Any]:
        assert self.count is not None
        previous = self.count
        self.count = previous + delta
        since = None
        if self._last_event_at is not None:
            since = round((now - self._last_event_at).total_seconds(), 3)
        self._last_event_at = now
        return {
            "type": "session_event",
            "event_type": CREATED if delta > 0 else DESTROYED,
            "timestamp": iso(now),
            "data": {
                "current_count": self.count,
                "previous_count": previous,
                "delta": abs(delta),
                "time_since_last_event": since,
                **extra,
            },
        }


class SessionMonitor:
    """Both channels into one tracker: each change it finds is appended once, as a
    `session_event`. It is what KATO's push channel feeds, and what each poll reports to."""

    def __init__(self, append: Callable[[Event], None], *, announce: bool = True) -> None:
        self._append = append
        self._announce = announce  # SSE_MONITOR_SESSION_EVENTS: off, the count still moves
        self.tracker = SessionTracker()

    def start_from(self, count: int | None) -> None:
        """The count clients were last told (None: never): the first poll announces what
        changed while no producer ran, once."""
        self.tracker = SessionTracker(count)

    @property
    def count(self) -> int | None:
        return self.tracker.count

    def polled(self, count: int | None, now: datetime, kato_time: datetime | None) -> None:
        """A polled (or snapshot) count against what the pushes implied; one event if they
        disagree, with the net change."""
        self._publish(self.tracker.observe(count, now, kato_time))

    def pushed(self, change: PushedChange) -> None:
        """A session KATO pushed: published at once, with its id, and the count moves."""
        self._publish(self.tracker.pushed(change))

    def push_snapshot(self, count: int, kato_time: datetime | None, received: datetime) -> None:
        """The count KATO sends when the push socket opens: as good as a poll. Its timestamp
        has no offset (KATO writes local time there), so it is ordered by our clock."""
        self.polled(count, received, None)

    def _publish(self, change: dict[str, Any] | None) -> None:
        if change is not None and self._announce:
            self._append(Event("session_event", change, durable=True))


def _after(
    pushed_kato: datetime | None,
    received: datetime,
    polled_kato: datetime | None,
    polled_at: datetime,
) -> bool:
    """Whether a push happened after a poll's answer (so the polled count lacks it)."""
    if pushed_kato is not None and polled_kato is not None:
        return pushed_kato > polled_kato
    return received > polled_at
