"""The `Event`: what a producer appends to the log, and the topics a client can subscribe to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """Something to tell every client.

    Durable events (session changes, upstream changes, ...) are kept in the history and replayed
    to a client that resumes; the others are state snapshots, and a client that falls behind
    only needs the newest one of each name.
    """

    name: str
    data: Mapping[str, Any]
    durable: bool = False


# What a client can subscribe to (`GET /events?topics=`), and the events of each. Events of no
# topic (`upstream`, `reset`) reach every client.
TOPICS = ("metrics", "containers", "sessions", "alerts")
TOPIC_OF = {
    "metrics": "metrics",
    "containers": "containers",
    "container_event": "containers",
    "session_event": "sessions",
    "alert": "alerts",
    "alerts": "alerts",
    "notification": "alerts",
    "notifications": "alerts",
}


def topic_of(name: str) -> str | None:
    return TOPIC_OF.get(name)
