"""The event log of a single process, in memory: the default, and the fastest.

Ids are `<epoch>-<seq>`, the epoch a random name of this process's log, so an id from an earlier
process (or from anything else) is recognised and answered with a `reset`. `append` encodes the
event once and hands the same frame to every follower at once, before it returns.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

from sse_monitor.bus.event import Event, topic_of
from sse_monitor.bus.frames import Frames
from sse_monitor.bus.log import Frame, Replay
from sse_monitor.bus.sse import encode_event

_EVENT_ID = re.compile(r"^(?P<epoch>[0-9a-f]{8,32})-(?P<seq>[0-9]{1,18})$")


def new_epoch() -> str:
    return secrets.token_hex(4)


class MemoryLog:
    """The history and the newest state of one process; lost when it stops."""

    def __init__(self, *, history_size: int, epoch: str | None = None) -> None:
        self._epoch = epoch or new_epoch()
        self._frames = Frames(history_size)

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def head(self) -> Frame | None:
        """The newest frame."""
        return self._frames.head

    def append(self, event: Event) -> None:
        seq = self._frames.seq + 1
        event_id = f"{self._epoch}-{seq}"
        data = encode_event(event, event_id)
        self._frames.add(Frame(seq, event_id, event, data, topic_of(event.name), time.monotonic()))

    def follow(self, deliver: Callable[[Frame], None]) -> None:
        self._frames.follow(deliver)

    async def current(self) -> list[Frame]:
        return self._frames.current()

    async def replay(self, after: str | None) -> Replay:
        if after is None:
            return Replay(self._frames.current(), self._frames.seq)
        seq = self._position_of(after)
        if seq is None:
            return self._reset("unknown_id")
        return self._frames.after(seq) or self._reset("too_old")

    async def recent(self, limit: int) -> list[Frame]:
        return self._frames.recent(limit)

    def _position_of(self, event_id: str) -> int | None:
        """The seq of an id this log issued, else None."""
        match = _EVENT_ID.match(event_id)
        if match is None or match["epoch"] != self._epoch:
            return None
        seq = int(match["seq"])
        return seq if seq <= self._frames.seq else None

    def _reset(self, reason: str) -> Replay:
        return self._frames.reset(reason, self._epoch, f"{self._epoch}-{self._frames.seq}")
