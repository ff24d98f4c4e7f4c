"""Markers (sse_monitor/history/markers.py) from the events the producer's own monitors append:
SessionMonitor for session changes, AlertManager's lifecycle for alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sse_monitor.bus.event import Event
from sse_monitor.history.markers import marker_of
from sse_monitor.monitor.sessions import SessionMonitor

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def session_events(*counts: int) -> list[Event]:
    """What SessionMonitor appends as the polled count goes through `counts`."""
    appended: list[Event] = []
    monitor = SessionMonitor(appended.append)
    for n, count in enumerate(counts):
        monitor.polled(count, NOW + timedelta(seconds=3 * n), None)
    return [event for event in appended if event.name == "session_event"]


def test_each_session_change_is_a_marker_at_its_time_with_the_count() -> None:
    events = session_events(2, 5, 4)
    markers = [marker_of(event) for event in events]
    assert [(m.kind, m.data["count"], m.data["delta"]) for m in markers if m] == [
        ("session_created", 5, 3),
        ("session_destroyed", 4, 1),
    ]
    assert [m.time for m in markers if m] == [
        (NOW + timedelta(seconds=3)).timestamp(),
        (NOW + timedelta(seconds=6)).timestamp(),
    ]


def alert(transition: str, **changes: object) -> Event:
    data = {
        "id": "a1",
        "rule": "kato_cpu_high",
        "subject": None,
        "severity": "warning",
        "message": "CPU 91 % > 90 %",
        "started_at": NOW.isoformat(),
        "resolved_at": None,
        "transition": transition,
        **changes,
    }
    return Event("alert", data, durable=True)


def test_an_alert_marks_where_it_fired_and_where_it_resolved_and_not_its_ack() -> None:
    fired = marker_of(alert("fired"))
    later = NOW + timedelta(minutes=4)
    resolved = marker_of(alert("resolved", state="resolved", resolved_at=later.isoformat()))
    assert fired is not None and resolved is not None
    assert (fired.kind, fired.time, fired.data["rule"]) == (
        "alert_fired",
        NOW.timestamp(),
        "kato_cpu_high",
    )
    assert (resolved.kind, resolved.time) == ("alert_resolved", later.timestamp())
    assert marker_of(alert("acknowledged")) is None


def test_other_and_malformed_events_mark_nothing() -> None:
    assert marker_of(Event("metrics", {"timestamp": NOW.isoformat()})) is None
    assert marker_of(Event("session_event", {"event_type": "session_created"})) is None
    assert marker_of(alert("fired", started_at="yesterday")) is None
    assert marker_of(alert("fired", started_at="2026-11-30T03:00:00")) is None  # no zone
