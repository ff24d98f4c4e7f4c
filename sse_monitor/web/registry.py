"""The open streams: who holds them, the limits on them, and how far behind each one is.

A stream is admitted before it subscribes, and released when it ends, whatever ends it, so a
refused client holds nothing and a closed one frees its place at once. Clients are counted by
their address (addresses.py: X-Forwarded-For only from a trusted proxy).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sse_monitor.bus.event import TOPICS
from sse_monitor.bus.fanout import Subscription
from sse_monitor.clock import iso, utc_now


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 503: the gateway is full; 429: this client has enough
    reason: str  # max_streams or max_streams_per_client
    message: str


@dataclass(eq=False, slots=True)
class OpenStream:
    id: str
    client: str
    topics: tuple[str, ...]
    opened_at: datetime
    subscription: Subscription | None = None  # set once the stream has subscribed

    def describe(self, now: float) -> dict[str, object]:
        subscription = self.subscription
        return {
            "id": self.id,
            "client": self.client,
            "topics": list(self.topics),
            "opened_at": iso(self.opened_at),
            "pending_frames": subscription.backlog if subscription else 0,
            "lag_seconds": round(subscription.lag_seconds(now), 3) if subscription else 0.0,
        }


@dataclass(slots=True)
class StreamRegistry:
    max_streams: int
    max_per_client: int
    streams: set[OpenStream] = field(default_factory=set)
    by_client: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # by reason, for /metrics
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def admit(self, client: str, topics: Iterable[str]) -> OpenStream | Refusal:
        if len(self.streams) >= self.max_streams:
            self.refused["max_streams"] += 1
            return Refusal(503, "max_streams", "the gateway has as many streams as it takes")
        if self.by_client[client] >= self.max_per_client:
            self.refused["max_streams_per_client"] += 1
            return Refusal(
                429,
                "max_streams_per_client",
                f"this client address has {self.max_per_client} streams open already",
            )
        stream = OpenStream(f"s-{next(self._ids)}", client, tuple(topics), utc_now())
        self.streams.add(stream)
        self.by_client[client] += 1
        return stream

    def release(self, stream: OpenStream) -> None:
        if stream not in self.streams:
            return
        self.streams.discard(stream)
        self.by_client[stream.client] -= 1
        if self.by_client[stream.client] <= 0:
            del self.by_client[stream.client]

    def describe(self, limit: int) -> dict[str, object]:
        """For GET /api/streams: counts, and the most lagging streams first."""
        now = time.monotonic()
        rows = sorted(
            (stream.describe(now) for stream in self.streams),
            key=lambda row: (-row["lag_seconds"], -row["pending_frames"], row["id"]),  # type: ignore[operator]
        )
        by_topic: Counter[str] = Counter(dict.fromkeys(TOPICS, 0))
        for stream in self.streams:
            by_topic.update(stream.topics)
        return {
            "open": len(self.streams),
            "max_streams": self.max_streams,
            "max_streams_per_client": self.max_per_client,
            "by_topic": dict(by_topic),
            "by_client": dict(self.by_client.most_common()),
            "streams": rows[:limit],
        }
