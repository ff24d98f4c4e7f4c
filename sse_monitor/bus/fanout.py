"""Fan-out: event ids, the replay history, and one bounded buffer per subscriber.

`publish` is synchronous and never waits for a client: it encodes the event once, keeps it in the
history if it is durable, and appends the same bytes to every subscriber's buffer. A subscriber
that falls behind has its state snapshots coalesced to the newest; if its durable events would
overflow, it is closed, and the client resumes from the history with `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from sse_monitor.bus.event import TOPICS, Event, topic_of
from sse_monitor.bus.sse import encode_event, encode_frame, to_json
from sse_monitor.clock import iso, utc_now

_EVENT_ID = re.compile(r"^(?P<boot>[0-9a-f]{8,32})-(?P<seq>[0-9]{1,18})$")


def new_boot_id() -> str:
    """Names this process in every event id, so an id from an earlier process is recognised."""
    return secrets.token_hex(4)


def parse_event_id(text: str) -> tuple[str, int] | None:
    """(boot, seq) of an id this gateway could have written, else None."""
    match = _EVENT_ID.match(text)
    if match is None:
        return None
    return match["boot"], int(match["seq"])


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """A published event with its id and its SSE bytes, shared by every subscriber."""

    seq: int
    id: str
    event: Event
    data: bytes
    topic: str | None = None  # None: for every subscriber
    published_at: float = 0.0  # time.monotonic()


@dataclass(slots=True)
class FanOutStats:
    """Running totals for the Prometheus endpoint: plain integers, cheap on the hot path."""

    published: Counter[str] = field(default_factory=Counter)  # by event name
    frames_sent: int = 0
    frames_coalesced: int = 0  # a pending state frame replaced by a newer one
    frames_dropped: int = 0  # the backlog of a stream closed for lagging
    closed: Counter[str] = field(default_factory=Counter)  # streams ended, by reason


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
        self.closed_reason: str | None = None
        # Set by the stream while it is idle with nothing pending: publishing then writes the
        # frame to the client's socket at once, in the publisher's own loop over subscribers,
        # instead of waking the stream's task for it. It answers False when the socket cannot
        # take the frame now; the frame is then queued as usual (see StreamResponse.write_now).
        self.write_through: Callable[[bytes], bool] | None = None

    def wants(self, frame: Frame) -> bool:
        return frame.topic is None or frame.topic in self.topics

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def preload(self, frames: Iterable[Frame]) -> None:
        """Queue a client's first frames (replay or snapshot); they do not count as backlog."""
        for frame in frames:
            self._pending.append(frame)
            if not frame.event.durable:
                self._latest_by_name[frame.event.name] = frame
        self._wakeup.set()

    def push(self, frame: Frame) -> None:
        if self.closed:
            return
        if self.write_through is not None and not self._pending:
            if self.write_through(frame.data):
                self._stats.frames_sent += 1
                return
            self.write_through = None  # until the stream is idle again
        if frame.event.durable:
            if self._durable_pending >= self._max_durable:
                self.close("overflow")
                return
            self._durable_pending += 1
        else:
            older = self._latest_by_name.get(frame.event.name)
            if older is not None:
                self._pending.remove(older)
                self._stats.frames_coalesced += 1
            self._latest_by_name[frame.event.name] = frame
        self._pending.append(frame)
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
        while not self._pending:
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
        self._stats.frames_sent += len(frames)
        return b"".join(frame.data for frame in frames)

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def lag_seconds(self, now: float) -> float:
        """How long the oldest frame not yet handed to the socket has waited."""
        return max(0.0, now - self._pending[0].published_at) if self._pending else 0.0


class Broadcaster:
    """Assigns ids, keeps the history and the latest state, and feeds every subscription."""

    def __init__(self, *, history_size: int, client_buffer: int, boot_id: str | None = None):
        self.boot_id = boot_id or new_boot_id()
        self._client_buffer = client_buffer
        self._seq = 0
        self._history: deque[Frame] = deque(maxlen=history_size)
        self._evicted_through = 0  # highest seq of a durable frame that left the history
        self._latest: dict[str, Frame] = {}
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

    def publish(self, event: Event) -> Frame:
        self._seq += 1
        event_id = f"{self.boot_id}-{self._seq}"
        topic = topic_of(event.name)
        data = encode_event(event, event_id)
        frame = Frame(self._seq, event_id, event, data, topic, time.monotonic())
        self.stats.published[event.name] += 1
        if event.durable:
            if len(self._history) == self._history.maxlen:
                self._evicted_through = self._history[0].seq
            self._history.append(frame)
        else:
            self._latest[event.name] = frame
        for subscription in self._subscriptions if topic is None else self._by_topic[topic]:
            subscription.push(frame)
        return frame

    def latest(self, name: str) -> Frame | None:
        return self._latest.get(name)

    def subscribe(
        self, last_event_id: str | None = None, topics: Collection[str] = TOPICS
    ) -> Subscription:
        """Register a client for some topics, its first frames already queued.

        With no id: the current state. With an id of ours, still covered by the history: every
        durable event after it and the newer state, in order. Otherwise: a `reset` event and the
        current state. Runs without awaiting, so no event can fall between replay and live.
        """
        subscription = Subscription(self._client_buffer, frozenset(topics), self.stats)
        frames, reset_reason = self.frames_after(last_event_id)
        if reset_reason is not None:
            frames = [self._reset_frame(reset_reason), *self._latest_frames()]
        subscription.preload(frame for frame in frames if subscription.wants(frame))
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

    def frames_after(self, last_event_id: str | None) -> tuple[list[Frame], str | None]:
        """Durable frames after an id, with the newer state; or why the id cannot be resumed.

        With no id, the current state alone. The reason, when there is one, is `unknown_id`
        (another process, or not an id of ours) or `too_old` (the history no longer covers it).
        """
        if last_event_id is None:
            return self._latest_frames(), None
        parsed = parse_event_id(last_event_id)
        if parsed is None or parsed[0] != self.boot_id or parsed[1] > self._seq:
            return [], "unknown_id"
        after = parsed[1]
        if after < self._evicted_through:
            return [], "too_old"
        durable = [frame for frame in self._history if frame.seq > after]
        state = [frame for frame in self._latest.values() if frame.seq > after]
        return sorted([*durable, *state], key=lambda frame: frame.seq), None

    def history(self) -> list[Frame]:
        return list(self._history)

    def _latest_frames(self) -> list[Frame]:
        return sorted(self._latest.values(), key=lambda frame: frame.seq)

    def _reset_frame(self, reason: str) -> Frame:
        """Tells a client its id could not be resumed; its id marks the current head as seen."""
        event = Event(
            "reset", {"reason": reason, "boot": self.boot_id, "timestamp": iso(utc_now())}
        )
        event_id = f"{self.boot_id}-{self._seq}"
        frame = encode_frame(id=event_id, event=event.name, data=to_json(event.data))
        return Frame(self._seq, event_id, event, frame, None, time.monotonic())
