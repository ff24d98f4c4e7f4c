"""The `Event` type and its encoding to Server-Sent Events frame bytes.

An event is encoded once, when it is published; every client is sent the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The SSE spec ends a line at CRLF, LF or CR, and nowhere else (not at U+2028, unlike
# str.splitlines), so multi-line data is split on exactly these.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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
}


def topic_of(name: str) -> str | None:
    return TOPIC_OF.get(name)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with an explicit offset, e.g. 2026-11-25T12:00:00.123456+00:00."""
    return moment.astimezone(UTC).isoformat()


def to_json(data: Any) -> str:
    """Compact JSON; NaN and infinities are refused, since browsers' JSON.parse rejects them."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_frame(
    *,
    data: str | None = None,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """One SSE frame, ended by a blank line.

    Fields go in the order a reader of `curl -N` expects: comment, retry, id, event, data.
    """
    lines: list[str] = []
    if comment is not None:
        lines.extend(f": {line}" for line in _LINE_BREAK.split(comment))
    if retry is not None:
        if retry < 0:
            raise ValueError("retry must be a non-negative number of milliseconds")
        lines.append(f"retry: {int(retry)}")
    if id is not None:
        _check_single_line("id", id)
        if "\0" in id:
            raise ValueError("an SSE id must not contain NUL (browsers ignore it)")
        lines.append(f"id: {id}")
    if event is not None:
        _check_single_line("event", event)
        lines.append(f"event: {event}")
    if data is not None:
        lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    if not lines:
        raise ValueError("an SSE frame needs at least one field")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def encode_event(event: Event, id: str) -> bytes:
    return encode_frame(id=id, event=event.name, data=to_json(event.data))


def _check_single_line(field: str, value: str) -> None:
    if _LINE_BREAK.search(value):
        raise ValueError(f"an SSE {field} must be a single line")
