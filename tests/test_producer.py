"""What the KATO monitor appends for each kind of reading, and the poller's fixed-rate tick."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from sse_monitor.bus.event import Event
from sse_monitor.monitor.kato import KatoMonitor
from sse_monitor.monitor.producer import Poller
from sse_monitor.monitor.sessions import SessionMonitor
from sse_monitor.sources.kato import KatoHealth, KatoMetrics, KatoReading

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


HEALTHY = KatoHealth(
    status="healthy", issues=(), uptime_seconds=10.0, active_sessions=2, latency_ms=1.5
)
METRICS = KatoMetrics(
    resources={"cpu_percent": 3.0, "memory_percent": 40.0, "disk_percent": 20.0},
    performance={
        "total_requests": 10.0,
        "total_errors": 0.0,
        "error_rate": 0.0,
        "average_response_time": 0.002,
    },
    rates={"requests_per_second": 1.0, "requests_per_minute": 60.0, "errors_per_minute": 0.0},
)


def ok(count: int = 2) -> KatoReading:
    health = KatoHealth("healthy", (), 10.0, count, 1.5)
    return KatoReading(health=health, metrics=METRICS)


DOWN = KatoReading(
    health=None, metrics=None, health_error="/health: refused", metrics_error="/metrics: refused"
)


class Appended(list[Event]):
    """What a producer appended: the only thing a producer is given is `append`."""

    def take(self) -> list[tuple[str, dict]]:
        """The events appended since the last take, as (name, JSON data)."""
        events = [(event.name, json.loads(json.dumps(event.data))) for event in self]
        self.clear()
        return events


def kato_monitor(kato: object = None, *, announce: bool = True) -> tuple[KatoMonitor, Appended]:
    appended = Appended()
    sessions = SessionMonitor(appended.append, announce=announce)
    return KatoMonitor(kato, appended.append, sessions), appended  # type: ignore[arg-type]


@pytest.fixture
def setup() -> tuple[KatoMonitor, Appended]:
    return kato_monitor()


def test_publishes_metrics_every_tick_and_upstream_once(setup) -> None:
    monitor, appended = setup
    monitor.apply(ok(), at(0))
    events = appended.take()
    assert [name for name, _ in events] == ["upstream", "metrics"]
    assert events[0][1]["reachable"] is True
    metrics = events[1][1]
    assert metrics["kato"]["status"] == "healthy"
    assert metrics["kato"]["resources"]["cpu_percent"] == 3.0
    assert metrics["sessions"] == {"active_count": 2, "push": {"state": "off"}}
    assert metrics["stale"] is False and metrics["error"] is None
    monitor.apply(ok(), at(3))
    assert [name for name, _ in appended.take()] == ["metrics"]


def test_outage_publishes_unreachable_once_and_no_session_event(setup) -> None:
    monitor, appended = setup
    monitor.apply(ok(2), at(0))
    appended.take()
    monitor.apply(DOWN, at(3))
    events = appended.take()
    assert [name for name, _ in events] == ["upstream", "metrics"]
    assert events[0][1]["reachable"] is False
    assert events[0][1]["error"] == "/health: refused"
    snapshot = events[1][1]
    assert snapshot["kato"]["status"] == "unreachable"
    assert snapshot["stale"] is True
    assert snapshot["sessions"]["active_count"] == 2  # last known, flagged stale, never 0
    assert snapshot["kato"]["resources"]["cpu_percent"] == 3.0
    assert snapshot["last_success"] == "2026-11-25T12:00:00+00:00"
    monitor.apply(DOWN, at(6))
    assert [name for name, _ in appended.take()] == ["metrics"]
    monitor.apply(ok(5), at(9))
    events = appended.take()
    assert [name for name, _ in events] == ["upstream", "session_event", "metrics"]
    assert events[0][1]["previous_state_seconds"] == 6.0
    assert events[1][1]["data"]["previous_count"] == 2
    assert events[1][1]["data"]["current_count"] == 5


def test_metrics_failure_alone_keeps_sessions_live(setup) -> None:
    monitor, appended = setup
    monitor.apply(ok(1), at(0))
    appended.take()
    reading = KatoReading(
        health=HEALTHY, metrics=None, metrics_error="/metrics: KATO reports an error: boom"
    )
    monitor.apply(reading, at(3))
    events = appended.take()
    assert [name for name, _ in events] == ["session_event", "metrics"]
    snapshot = events[1][1]
    assert snapshot["kato"]["status"] == "healthy"
    assert snapshot["stale"] is True
    assert "boom" in snapshot["error"]


def test_session_events_flag_off() -> None:
    monitor, appended = kato_monitor(announce=False)
    monitor.apply(ok(1), at(0))
    monitor.apply(ok(4), at(3))
    names = [name for name, _ in appended.take()]
    assert "session_event" not in names
    assert monitor.snapshot is not None
    assert monitor.snapshot["sessions"]["active_count"] == 4


class ScriptedKato:
    """Answers from a list; an exception in it is raised, like a bug in a source would be."""

    def __init__(self, readings: list) -> None:
        self.readings = readings
        self.calls = 0
        self.all_read = asyncio.Event()

    async def read(self) -> KatoReading:
        reading = self.readings[min(self.calls, len(self.readings) - 1)]
        self.calls += 1
        if self.calls >= len(self.readings):
            self.all_read.set()
        if isinstance(reading, Exception):
            raise reading
        return reading


async def test_an_exception_in_a_tick_does_not_end_the_loop() -> None:
    kato = ScriptedKato([RuntimeError("bug"), ok(3)])
    monitor, appended = kato_monitor(kato)
    poller = Poller(monitor, appended.append, interval=0.05)
    task = asyncio.create_task(poller.run())
    try:
        await asyncio.wait_for(kato.all_read.wait(), timeout=5)
    finally:
        task.cancel()
    assert monitor.snapshot is not None
    assert monitor.snapshot["sessions"]["active_count"] == 3


async def test_ticks_are_fixed_rate_even_when_reads_take_time() -> None:
    """Start-to-start spacing stays at the interval when each read takes most of it."""
    starts: list[float] = []
    six_started = asyncio.Event()
    loop = asyncio.get_running_loop()

    class SlowKato:
        async def read(self) -> KatoReading:
            starts.append(loop.time())
            if len(starts) == 6:
                six_started.set()
            await asyncio.sleep(0.24)  # the read's own duration, not a wait
            return ok()

    monitor, appended = kato_monitor(SlowKato())
    poller = Poller(monitor, appended.append, interval=0.3)
    task = asyncio.create_task(poller.run())
    try:
        await asyncio.wait_for(six_started.wait(), timeout=10)
    finally:
        task.cancel()
    elapsed = starts[5] - starts[0]
    # work-then-sleep would take 5 x 0.54 = 2.7 s; fixed rate takes 5 x 0.3 = 1.5 s. The
    # line between them leaves a loaded machine 0.6 s of lateness.
    assert elapsed < 2.1, elapsed
