"""The moments a chart marks: each session change and each alert that fired or resolved, read
from the durable events the producer appends (an acknowledgement changes no chart)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sse_monitor.bus.event import Event

SESSION_KINDS = {"session_created": "session_created", "session_destroyed": "session_destroyed"}
ALERT_KINDS = {"fired": "alert_fired", "resolved": "alert_resolved"}


@dataclass(frozen=True, slots=True)
class Marker:
    time: float  # seconds since the epoch
    kind: str  # session_created, session_destroyed, alert_fired, alert_resolved
    data: dict[str, Any]  # what the page says of it: the count, or the alert


def marker_of(event: Event) -> Marker | None:
    """The marker an appended event makes, if any."""
    data = event.data
    if event.name == "session_event":
        kind = SESSION_KINDS.get(data.get("event_type"))  # type: ignore[arg-type]
        detail = data.get("data")
        moment = seconds_of(data.get("timestamp"))
        if kind is None or moment is None or not isinstance(detail, Mapping):
            return None
        figures = {"count": detail.get("current_count"), "delta": detail.get("delta")}
        return Marker(moment, kind, figures)
    if event.name == "alert":
        kind = ALERT_KINDS.get(data.get("transition"))  # type: ignore[arg-type]
        at = data.get("started_at") if kind == "alert_fired" else data.get("resolved_at")
        moment = seconds_of(at)
        if kind is None or moment is None:
            return None
        names = ("id", "rule", "subject", "severity", "message")
        return Marker(moment, kind, {name: data.get(name) for name in names})
    return None


def seconds_of(text: object) -> float | None:
    """An event's ISO-8601 time with its zone as seconds since the epoch; None otherwise."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None
