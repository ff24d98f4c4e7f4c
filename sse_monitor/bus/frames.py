"""The frames a log holds in this process: the newest state, the durable history, the followers.

Both logs keep one: the in-memory log as its whole self, the Redis log as its local copy of the
stream (fed by its tail), so that a replay, the current state and the recent history are read
from memory on every node, whatever the number of clients. Positions (`seq`) and ids are made
by the log that owns this; here they are only kept in order and handed out.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from sse_monitor.bus.event import Event
from sse_monitor.bus.log import Frame, Replay
from sse_monitor.bus.sse import encode_event
from sse_monitor.clock import iso, utc_now


class Frames:
    """The newest frame of each state event and the last `history_size` durable frames."""

    def __init__(self, history_size: int) -> None:
        self._history: deque[Frame] = deque(maxlen=history_size)
        self.evicted_through = 0  # highest seq of a durable frame that left the history
        self._state: dict[str, Frame] = {}
        self._followers: list[Callable[[Frame], None]] = []
        self.head: Frame | None = None  # the newest frame
        self.seq = 0  # the log's position: the head's seq, or where the log says it stands

    def add(self, frame: Frame) -> None:
        """Keep a frame (its seq past every one kept) and hand it to every follower."""
        self.keep(frame)
        for deliver in self._followers:
            deliver(frame)

    def keep(self, frame: Frame) -> None:
        """Keep a frame without handing it out: what a log loads when it starts."""
        if frame.event.durable:
            if len(self._history) == self._history.maxlen:
                self.evicted_through = self._history[0].seq
            self._history.append(frame)
        else:
            self._state[frame.event.name] = frame
        self.head = frame
        self.seq = frame.seq

    def announce(self, frame: Frame) -> None:
        """Hand a frame to every follower without keeping it (a `reset` for every client)."""
        for deliver in self._followers:
            deliver(frame)

    def follow(self, deliver: Callable[[Frame], None]) -> None:
        self._followers.append(deliver)

    def clear(self) -> None:
        """Forget every frame: the log they belonged to is gone."""
        self._history.clear()
        self._state.clear()
        self.evicted_through = 0
        self.head = None
        self.seq = 0

    def current(self) -> list[Frame]:
        return sorted(self._state.values(), key=_position)

    def recent(self, limit: int) -> list[Frame]:
        return list(self._history)[-limit:] if limit > 0 else []

    def durable(self) -> Iterable[Frame]:
        return iter(self._history)

    def after(self, seq: int) -> Replay | None:
        """Every durable frame after `seq` and the state newer than it, in order; None when the
        history no longer covers `seq` (a durable frame after it was evicted)."""
        if seq < self.evicted_through:
            return None
        durable = [frame for frame in self._history if frame.seq > seq]
        state = [frame for frame in self._state.values() if frame.seq > seq]
        return Replay(sorted([*durable, *state], key=_position), self.seq)

    def reset(self, reason: str, epoch: str, event_id: str) -> Replay:
        """A `reset` whose id (`event_id`, the log's position) marks everything so far as seen,
        then the current state."""
        return Replay(
            [reset_frame(reason, epoch, event_id, self.seq), *self.current()], self.seq, reason
        )


def reset_frame(reason: str, epoch: str, event_id: str, seq: int) -> Frame:
    """The `reset` event: events may have been missed; the state that follows is the truth."""
    event = Event("reset", {"reason": reason, "boot": epoch, "timestamp": iso(utc_now())})
    return Frame(seq, event_id, event, encode_event(event, event_id), None, time.monotonic())


def _position(frame: Frame) -> int:
    return frame.seq
