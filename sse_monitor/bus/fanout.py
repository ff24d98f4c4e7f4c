"""The local fan-out: one bounded buffer per subscriber, fed by the log's live tail.

`deliver` is synchronous and never waits for a client: it hands the same encoded frame to every
subscriber of its topic. A subscriber that falls behind has its state snapshots coalesced to the
newest; if its durable events would overflow its buffer, it is closed, and the client resumes
from the log's history with `Last-Event-ID`. Any log implementation feeds it (`EventLog.follow`).

A subscription starts by holding what the tail delivers while its client's replay is read from
the log (which may await); `start` then puts the replay first and keeps only the held frames the
replay did not cover, by position, so a client gets every frame once and in order.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import structlog

from sse_monitor.bus.event import TOPICS
from sse_monitor.bus.log import Frame, Replay

log = structlog.get_logger("sse_monitor.bus.fanout")


@dataclass(slots=True)
class FanOutStats:
    """Running totals for the Prometheus endpoint: plain integers, cheap on the hot path."""

    published: Counter[str] = field(default_factory=Counter)  # by event name
    frames_written_through: int = 0  # written to an idle stream's socket by the fan-out's loop
    frames_sent_by_streams: int = 0  # queued, then written by the stream's own task
    write_through_refused: int = 0  # a full socket: the frame was queued instead
    frames_coalesced: int = 0  # a pending state frame replaced by a newer one
    frames_dropped: int = 0  # the backlog of a stream closed for lagging
    closed: Counter[str] = field(default_factory=Counter)  # streams ended, by reason

    @property
    def frames_sent(self) -> int:
        """Frames handed to client sockets, either way (one counter each on the hot path)."""
        return self.frames_written_through + self.frames_sent_by_streams


class Subscription:
    """One client's bounded buffer of frames, drained by that client's stream."""

    def __init__(
        self,
        max_durable: int,
        topics: frozenset[str] = frozenset(TOPICS),
        stats: FanOutStats | None = None,
    ) -> None:
        self._max_durable = max_durable
        self.topics = topics
        self._stats = stats or FanOutStats()
        self._pending: deque[Frame] = deque()
        self._latest_by_name: dict[str, Frame] = {}
        self._durable_pending = 0
        self._wakeup = asyncio.Event()
        self.started = False  # False while the client's replay is being read
        self.quiet = False  # nothing pushed since the last keep-alive sweep (FanOut.keep_alive)
        self.closed_reason: str | None = None
        # Set by the stream while it is idle with nothing pending: delivering then writes the
        # frame to the client's socket at once, in the fan-out's own loop over subscribers,
        # instead of waking the stream's task for it. It answers False when the socket cannot
        # take the frame now; the frame is then queued as usual (see StreamResponse.write_now).
        self.write_through: Callable[[Frame], bool] | None = None

    def wants(self, frame: Frame) -> bool:
        return frame.topic is None or frame.topic in self.topics

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def start(self, replay: Replay) -> None:
        """Queue the client's replay first, then what was delivered meanwhile and is newer.

        The replay's frames do not count as backlog; the held frames keep their count.
        """
        held = [frame for frame in self._pending if frame.seq > replay.through]
        self._pending = deque(frame for frame in replay.frames if self.wants(frame))
        self._latest_by_name = {
            frame.event.name: frame for frame in self._pending if not frame.event.durable
        }
        self._durable_pending = 0
        self.started = True
        for frame in held:
            self._queue(frame)
        self._wakeup.set()

    def push(self, frame: Frame, *, keep_alive: bool = False) -> None:
        """Hand a frame over: to the socket at once when the stream is idle, else to its
        queue. A keep-alive is not counted as a frame in the stats."""
        if self.closed:
            return
        self.quiet = False
        if self.write_through is not None and not self._pending:
            try:
                written = self.write_through(frame)
            except Exception as error:  # one broken socket never stops the delivery to others
                log.warning("stream.write_failed", error=repr(error)[:200])
                self.close("client")
                return
            if written:
                if not keep_alive:
                    self._stats.frames_written_through += 1
                return
            if not keep_alive:
                self._stats.write_through_refused += 1
            self.write_through = None  # until the stream is idle again
        self._queue(frame, keep_alive)

    def _queue(self, frame: Frame, keep_alive: bool = False) -> None:
        if frame.event.durable:
            if self._durable_pending >= self._max_durable:
                self.close("overflow")
                return
            self._durable_pending += 1
        else:
            older = self._latest_by_name.get(frame.event.name)
            if older is not None:
                self._pending.remove(older)
                if not keep_alive:
                    self._stats.frames_coalesced += 1
            self._latest_by_name[frame.event.name] = frame
        self._pending.append(frame)
        if self.started:
            self._wakeup.set()

    def close(self, reason: str) -> None:
        """End the stream; an overflowed client loses its backlog and resumes from the history."""
        if self.closed:
            return
        self.closed_reason = reason
        if reason == "overflow":
            self._stats.frames_dropped += len(self._pending)
            self._pending.clear()
            self._latest_by_name.clear()
        self._wakeup.set()

    async def next_chunk(self) -> bytes | None:
        """Every pending frame as one chunk, waiting if there is none; None once closed."""
        while not (self.started and self._pending):
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.closed_reason == "overflow":
            return None
        frames = self._pending
        self._pending = deque()
        self._latest_by_name.clear()
        self._durable_pending = 0
        self._stats.frames_sent_by_streams += len(frames)
        return b"".join(frame.data for frame in frames)

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def lag_seconds(self, now: float) -> float:
        """How long the oldest frame not yet handed to the socket has waited."""
        return max(0.0, now - self._pending[0].appended_at) if self._pending else 0.0


class FanOut:
    """Every subscription of this process, by topic; fed one frame at a time by the log."""

    def __init__(self, *, client_buffer: int) -> None:
        self._client_buffer = client_buffer
        self._subscriptions: set[Subscription] = set()
        # Delivering an event costs work for the subscribers of its topic only.
        self._by_topic: dict[str, set[Subscription]] = {topic: set() for topic in TOPICS}
        self.stats = FanOutStats()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def subscribers_by_topic(self) -> dict[str, int]:
        return {topic: len(subscribers) for topic, subscribers in self._by_topic.items()}

    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions)

    def deliver(self, frame: Frame) -> None:
        self.stats.published[frame.event.name] += 1
        topic = frame.topic
        for subscription in self._subscriptions if topic is None else self._by_topic[topic]:
            subscription.push(frame)

    def keep_alive(self, ping: Frame) -> int:
        """Push `ping` to each subscription that was pushed nothing since the last call; how
        many that was. Called every half ping interval, a stream is never silent longer than
        the interval, and no stream keeps a timer of its own: a timer per stream and wake-up
        was, at 10,000 streams, most of what each full garbage collection walked anew."""
        pinged = 0
        for subscription in self._subscriptions:
            if subscription.quiet:
                subscription.push(ping, keep_alive=True)  # not quiet now: next ping a sweep on
                pinged += 1
            else:
                subscription.quiet = True
        return pinged

    def subscribe(self, topics: Collection[str] = TOPICS) -> Subscription:
        """Register a client for some topics; it holds what it is delivered until `start`."""
        subscription = Subscription(self._client_buffer, frozenset(topics), self.stats)
        self._subscriptions.add(subscription)
        for topic in subscription.topics:
            self._by_topic[topic].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        for topic in subscription.topics:
            self._by_topic[topic].discard(subscription)

    def close_all(self, reason: str = "shutdown") -> None:
        for subscription in list(self._subscriptions):
            subscription.close(reason)
