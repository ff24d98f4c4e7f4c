"""The event log of a single process, in memory: the default, and the fastest.

Ids are `<epoch>-<seq>`, the epoch a random name of this log, so an id from another log (or
from anything else) is recognised and answered with a `reset`. `append` encodes the event once
and hands the same frame to every follower at once, before it returns.

With a journal (`bus/journal.py`, SQLite), the log outlives the process: `open` loads the epoch,
the position, the history and the state kept by the last one, and every frame appended is
queued for the journal's thread. Without one, a restart is a new epoch and everything is lost.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

import structlog

from sse_monitor.bus.event import Event, topic_of
from sse_monitor.bus.frames import Frames
from sse_monitor.bus.journal import Journal
from sse_monitor.bus.log import Frame, Replay
from sse_monitor.bus.sse import encode_event

log = structlog.get_logger("sse_monitor.bus.memory")

_EVENT_ID = re.compile(r"^(?P<epoch>[0-9a-f]{8,32})-(?P<seq>[0-9]{1,18})$")


def new_epoch() -> str:
    return secrets.token_hex(4)


class MemoryLog:
    """The history and the newest state of one process; lost when it stops, unless a journal
    keeps them."""

    def __init__(
        self, *, history_size: int, epoch: str | None = None, journal: Journal | None = None
    ) -> None:
        self._epoch = epoch or new_epoch()
        self._history_size = history_size
        self._frames = Frames(history_size)
        self._journal = journal

    async def open(self) -> None:
        """Take up where the journal's last process stopped (nothing to do without a journal):
        before anything is appended or read."""
        if self._journal is None:
            return
        saved = await self._journal.open(self._epoch, self._history_size)
        self._epoch = saved.epoch
        self._frames.evicted_through = saved.evicted_through
        for frame in saved.frames:
            self._frames.keep(frame)
        self._frames.seq = saved.position

    async def aclose(self) -> None:
        """Have the journal write every frame, so that every id resumes after a restart."""
        if self._journal is not None:
            await self._journal.aclose()

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def head(self) -> Frame | None:
        """The newest frame."""
        return self._frames.head

    def append(self, event: Event) -> None:
        journal = self._journal
        if journal is not None and not journal.writing:
            # An id issued now would not be kept, and could be issued again after a restart.
            log.error("log.append_refused", event_name=event.name, reason="journal not open")
            return
        seq = self._frames.seq + 1
        event_id = f"{self._epoch}-{seq}"
        data = encode_event(event, event_id)
        frame = Frame(seq, event_id, event, data, topic_of(event.name), time.monotonic())
        self._frames.add(frame)
        if journal is not None:
            journal.record(frame)

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
