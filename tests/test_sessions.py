"""The session count from pushes and polls: each change counted once, whichever channel saw it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sse_monitor.monitor.sessions import SessionTracker
from sse_monitor.sources.kato_push import PushedChange

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def push(created: bool, kato: float, received: float, sid: str = "session-a") -> PushedChange:
    return PushedChange(
        created=created,
        session_id=sid,
        node_id="node-1",
        reason=None if created else "explicit_delete",
        kato_time=at(kato),
        received_at=at(received),
    )


def test_a_push_moves_the_count_at_once_with_its_identity() -> None:
    tracker = SessionTracker()
    tracker.observe(2, at(0), at(0))
    event = tracker.pushed(push(True, 1.0, 1.01, "session-x"))
    assert event is not None
    assert event["event_type"] == "session_created"
    assert event["data"] == {
        "current_count": 3,
        "previous_count": 2,
        "delta": 1,
        "time_since_last_event": None,
        "source": "push",
        "session_id": "session-x",
        "node_id": "node-1",
    }
    gone = tracker.pushed(push(False, 2.0, 2.01, "session-x"))
    assert gone is not None and gone["data"]["reason"] == "explicit_delete"
    assert gone["data"]["current_count"] == 2
    # A poll that saw both: nothing to correct.
    assert tracker.observe(2, at(3), at(3)) is None


def test_a_change_seen_by_both_channels_is_counted_once_whatever_the_order() -> None:
    # Push first, poll after (the usual order).
    tracker = SessionTracker()
    tracker.observe(5, at(0), at(0))
    assert tracker.pushed(push(True, 1.0, 1.0)) is not None
    assert tracker.observe(6, at(3), at(3)) is None
    assert tracker.count == 6
    # Poll answered after the change but the push arrives after the poll was read (in the
    # grace period): the push counts, the poll then agrees.
    tracker = SessionTracker()
    tracker.observe(5, at(0), at(0))
    assert tracker.pushed(push(True, 2.9, 3.2)) is not None
    assert tracker.observe(6, at(3.0), at(3.0)) is None
    assert tracker.count == 6
    # A push stamped after the poll's answer is not in the polled count: still no correction.
    tracker = SessionTracker()
    tracker.observe(5, at(0), at(0))
    tracker.pushed(push(True, 3.1, 3.15))
    assert tracker.observe(5, at(3.0), at(3.0)) is None
    assert tracker.count == 6
    assert tracker.observe(6, at(6), at(6)) is None  # the next poll has it


def test_a_push_later_than_the_reconciled_poll_is_not_counted_again() -> None:
    tracker = SessionTracker()
    tracker.observe(5, at(0), at(0))
    correction = tracker.observe(6, at(3), at(3))  # no push seen: the poll corrects
    assert correction is not None and correction["data"]["source"] == "poll"
    assert tracker.pushed(push(True, 2.0, 4.0)) is None  # the push of that change, too late
    assert tracker.count == 6 and tracker.pushes_late == 1


def test_changes_no_push_reports_are_corrected_by_the_poll_with_the_net_change() -> None:
    tracker = SessionTracker()
    tracker.observe(10, at(0), at(0))
    tracker.pushed(push(True, 1.0, 1.0, "a"))  # 11
    # Meanwhile 3 sessions expired by TTL and another worker created 1: net -2 unseen.
    correction = tracker.observe(9, at(3), at(3))
    assert correction is not None
    assert correction["event_type"] == "session_destroyed"
    assert correction["data"] == {
        "current_count": 9,
        "previous_count": 11,
        "delta": 2,
        "time_since_last_event": 2.0,
        "source": "poll",
    }


def test_without_kato_times_the_gateway_clock_orders_them() -> None:
    tracker = SessionTracker()
    tracker.observe(1, at(0))
    change = PushedChange(True, "s", "n", None, kato_time=None, received_at=at(1))
    assert tracker.pushed(change) is not None
    assert tracker.observe(2, at(2)) is None  # received before the poll answered: in it
    late = PushedChange(True, "t", "n", None, kato_time=None, received_at=at(3))
    tracker.pushed(late)
    assert tracker.observe(3, at(4)) is None


def test_no_baseline_no_push_event_and_unknown_counts_change_nothing() -> None:
    tracker = SessionTracker()
    assert tracker.pushed(push(True, 1, 1)) is None
    assert tracker.observe(None, at(1)) is None
    assert tracker.observe(4, at(2), at(2)) is None  # the baseline
    assert tracker.observe(None, at(3)) is None
    assert tracker.count == 4
    assert tracker.pushed(push(False, 4, 4)) is not None
    tracker.observe(0, at(5), at(5))
    assert tracker.pushed(push(False, 6, 6)) is None  # below zero cannot be


# Polls alone


def test_first_count_is_the_baseline() -> None:
    detector = SessionTracker()
    assert detector.observe(5, at(0)) is None
    assert detector.count == 5


def test_count_going_up_and_down() -> None:
    detector = SessionTracker()
    detector.observe(2, at(0))
    up = detector.observe(5, at(3))
    assert up is not None
    assert up["type"] == "session_event"
    assert up["event_type"] == "session_created"
    assert up["timestamp"] == "2026-11-25T12:00:03+00:00"
    assert up["data"] == {
        "current_count": 5,
        "previous_count": 2,
        "delta": 3,
        "time_since_last_event": None,
        "source": "poll",
    }
    down = detector.observe(1, at(9))
    assert down is not None
    assert down["event_type"] == "session_destroyed"
    assert down["data"] == {
        "current_count": 1,
        "previous_count": 5,
        "delta": 4,
        "time_since_last_event": 6.0,
        "source": "poll",
    }
    assert detector.observe(1, at(12)) is None


def test_an_outage_is_not_zero_and_recovery_compares_with_last_known() -> None:
    detector = SessionTracker()
    detector.observe(4, at(0))
    for t in (3, 6, 9):
        assert detector.observe(None, at(t)) is None
    assert detector.count == 4
    assert detector.observe(4, at(12)) is None  # back with the same count: nothing happened
    detector.observe(None, at(15))
    change = detector.observe(6, at(18))
    assert change is not None
    assert change["data"]["previous_count"] == 4
    assert change["data"]["delta"] == 2


def test_outage_before_any_baseline_emits_nothing_on_first_success() -> None:
    detector = SessionTracker()
    assert detector.observe(None, at(0)) is None
    assert detector.observe(3, at(3)) is None
