"""The event log's contract: the one seam between the producer and the edge.

Producers are given `append` and nothing else; the edge is given a `LogReader` (`current`,
`replay`, `recent`, `follow`) and never sees who appends. `memory.py` is the log of a single
process; a second log (Redis Streams, for a cluster) is one new module that keeps this contract.

The contract:

- **Order.** The log gives every event one position, `Frame.seq`, increasing by append order.
  Everything a reader gets (a replay, the live tail) is in that order. `seq` compares frames of
  one epoch only; it is for the edge's own bookkeeping (dropping what a replay already covered),
  never sent to a client.
- **Ids.** `Frame.id` is the text a client sees as the SSE `id:` and sends back as
  `Last-Event-ID`. It is issued by the log and opaque to everything else: only the log that made
  it can read it. An id is printable ASCII, at most 128 characters (what the edge reads).
- **Epoch.** `epoch` names one life of the log (a process's memory, its journal until a stop
  that was not clean, or a Redis stream until it is lost). Ids carry it, so an id from another
  epoch is recognised as such.
- **State and durable events.** A state event (`Event.durable` false: `metrics`, `containers`,
  `alerts`) replaces the one of the same name; `current()` holds the newest of each. Durable
  events (`session_event`, `alert`, `upstream`, ...) are kept in order, the last `history`
  of them, and replayed to a client that resumes.
- **Replay.** `replay(after)` answers a client that says the last id it saw. With no id: the
  current state. With an id of this epoch still covered by the history: every durable event
  after it and the state newer than it, in order. Otherwise a `reset`: an event named `reset`
  (its data says why: `unknown_id` for an id of another epoch or not ours, `too_old` for one the
  history no longer covers) followed by the current state. A reset tells the client that events
  may have been missed and it must take the state it is given as the truth; the reset frame's id
  marks the log's position, so resuming from it misses nothing.
- **Live tail.** `follow(deliver)` calls `deliver(frame)` for every frame appended from then on,
  in order, on the event loop's thread, never blocking. A replay and the tail may overlap: a
  reader subscribes to the tail first, then replays, then drops every live frame whose `seq` is
  at or before `Replay.through` (the replay covered it, or a newer state replaced it). Nothing
  here assumes that a replay does not await.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sse_monitor.bus.event import Event


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """An event as the log holds it: its position, its id and its SSE bytes, shared by all."""

    seq: int
    id: str
    event: Event
    data: bytes
    topic: str | None = None  # None: for every subscriber
    appended_at: float = 0.0  # time.monotonic() where it was appended or received


@dataclass(frozen=True, slots=True)
class Replay:
    """What a client gets before the live tail: the frames, and the position they cover."""

    frames: list[Frame]
    through: int  # the log's position when read: every frame at or before it is covered
    reset: str | None = None  # why the id could not be resumed, or None


class LogReader(Protocol):
    """The log as the edge sees it: it reads, and never appends."""

    @property
    def epoch(self) -> str: ...

    def follow(self, deliver: Callable[[Frame], None]) -> None:
        """Call `deliver` with every frame appended from now on."""

    async def current(self) -> list[Frame]:
        """The newest frame of each state event, oldest first."""

    async def replay(self, after: str | None) -> Replay:
        """What a client that last saw `after` (None: nothing) must be sent, in order."""

    async def recent(self, limit: int) -> list[Frame]:
        """The newest `limit` durable frames, oldest first."""


class EventLog(LogReader, Protocol):
    """Ordered events with opaque ids, the newest state, a bounded history and a live tail."""

    def append(self, event: Event) -> None:
        """Take one event. Never waits: a remote log queues it, in order. Producers are given
        this method alone."""
