"""The event log of a single process, in memory: the default, and the fastest.

Ids are `<epoch>-<seq>`, the epoch a random name of this process's log, so an id from an earlier
process (or from anything else) is recognised and answered with a `reset`. `append` encodes the
event once and hands the same frame to every follower at once, before it returns.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from collections.abc import Callable

from sse_monitor.bus.event import Event, topic_of
from sse_monitor.bus.log import Frame, Replay
from sse_monitor.bus.sse import encode_event
from sse_monitor.clock import iso, utc_now

_EVENT_ID = re.compile(r"^(?P<epoch>[0-9a-f]{8,32})-(?P<seq>[0-9]{1,18})$")


def new_epoch() -> str:
    return secrets.token_hex(4)


class MemoryLog:
    """The history and the newest state of one process; lost when it stops."""

    def __init__(self, *, history_size: int, epoch: str | None = None) -> None:
        self._epoch = epoch or new_epoch()
        self._seq = 0
        self._history: deque[Frame] = deque(maxlen=history_size)
        self._evicted_through = 0  # highest seq of a durable frame that left the history
        self._state: dict[str, Frame] = {}
        self._followers: list[Callable[[Frame], None]] = []
        self.head: Frame | None = None  # the newest frame

    @property
    def epoch(self) -> str:
        return self._epoch

    def append(self, event: Event) -> None:
        self._seq += 1
        event_id = f"{self._epoch}-{self._seq}"
        data = encode_event(event, event_id)
        frame = Frame(self._seq, event_id, event, data, topic_of(event.name), time.monotonic())
        if event.durable:
            if len(self._history) == self._history.maxlen:
                self._evicted_through = self._history[0].seq
            self._history.append(frame)
        else:
            self._state[event.name] = frame
        self.head = frame
        for deliver in self._followers:
            deliver(frame)

    def follow(self, deliver: Callable[[Frame], None]) -> None:
        self._followers.append(deliver)

    async def current(self) -> list[Frame]:
        return self._current()

    async def replay(self, after: str | None) -> Replay:
        if after is None:
            return Replay(self._current(), self._seq)
        seq = self._position_of(after)
        if seq is None:
            return self._reset("unknown_id")
        if seq < self._evicted_through:
            return self._reset("too_old")
        durable = [frame for frame in self._history if frame.seq > seq]
        state = [frame for frame in self._state.values() if frame.seq > seq]
        return Replay(sorted([*durable, *state], key=_position), self._seq)

    async def recent(self, limit: int) -> list[Frame]:
        return list(self._history)[-limit:] if limit > 0 else []

    def _position_of(self, event_id: str) -> int | None:
        """The seq of an id this log issued, else None."""
        match = _EVENT_ID.match(event_id)
        if match is None or match["epoch"] != self._epoch:
            return None
        seq = int(match["seq"])
        return seq if seq <= self._seq else None

    def _current(self) -> list[Frame]:
        return sorted(self._state.values(), key=_position)

    def _reset(self, reason: str) -> Replay:
        """A `reset` whose id marks the current head as seen, then the current state."""
        event = Event("reset", {"reason": reason, "boot": self._epoch, "timestamp": iso(utc_now())})
        event_id = f"{self._epoch}-{self._seq}"
        data = encode_event(event, event_id)
        frame = Frame(self._seq, event_id, event, data, None, time.monotonic())
        return Replay([frame, *self._current()], self._seq, reason)


def _position(frame: Frame) -> int:
    return frame.seq
