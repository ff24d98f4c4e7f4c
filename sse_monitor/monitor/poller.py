"""The tick loop: read KATO at a fixed rate, build the snapshot, detect changes, publish.

One poller runs for the app's whole life, whether or not anyone is connected, so that no change
is missed while nobody watches, and so that upstream load never depends on the number of clients.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import structlog

from sse_monitor.bus.event import Event
from sse_monitor.bus.fanout import Broadcaster
from sse_monitor.clock import iso, utc_now
from sse_monitor.monitor.sessions import PushedChange, SessionTracker
from sse_monitor.sources.kato import KatoHealth, KatoMetrics, KatoReading

log = structlog.get_logger("sse_monitor.monitor.poller")


class KatoSource(Protocol):
    async def read(self) -> KatoReading: ...


class ContainerSource(Protocol):
    def snapshot(self) -> dict[str, Any] | None: ...


class PushChannel(Protocol):
    def describe(self) -> dict[str, Any]: ...


class AlertEvaluator(Protocol):
    async def evaluate(
        self, metrics: dict[str, Any] | None, containers: dict[str, Any] | None
    ) -> None: ...


class Poller:
    """Owns the latest KATO snapshot; everything it learns goes out through the broadcaster."""

    def __init__(
        self,
        kato: KatoSource,
        broadcaster: Broadcaster,
        *,
        interval: float,
        session_events: bool = True,
        containers: ContainerSource | None = None,
        alerts: AlertEvaluator | None = None,
        kato_url: str = "",
        clock: Callable[[], datetime] = utc_now,
        observe_tick: Callable[[float], None] | None = None,
        push: PushChannel | None = None,
    ) -> None:
        self._kato = kato
        self._broadcaster = broadcaster
        self.interval = interval
        self._session_events = session_events
        self._containers = containers
        self._alerts = alerts
        self._kato_url = kato_url
        self._clock = clock
        self._observe_tick = observe_tick
        self.upstream_errors: Counter[str] = Counter()  # failed reads, by source
        self._push = push
        self.sessions = SessionTracker()
        self.snapshot: dict[str, Any] | None = None
        self.tick_count = 0
        self.last_tick_monotonic: float | None = None
        self._health: KatoHealth | None = None
        self._metrics: KatoMetrics | None = None
        self._last_success: datetime | None = None
        self._reachable: bool | None = None
        self._reachable_since: datetime | None = None
        self._metrics_error: str | None = None

    async def run(self) -> None:
        """Tick at a fixed rate (start to start); an overrun skips ticks instead of bunching up."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.tick()
            next_at += self.interval
            now = loop.time()
            if now > next_at:
                missed = int((now - next_at) // self.interval) + 1
                log.warning("poller.overrun", missed_ticks=missed, interval=self.interval)
                next_at += missed * self.interval
            await asyncio.sleep(next_at - now)

    async def tick(self) -> None:
        """One poll; an exception here is logged and never ends the loop."""
        self.tick_count += 1
        started = time.monotonic()
        containers = None
        try:
            containers = self._containers.snapshot() if self._containers is not None else None
            if containers is not None and not containers.get("available"):
                self.upstream_errors["docker"] += 1
            if containers is not None:
                # First, so that a slow KATO never delays it; the collector samples in the
                # background, so this never waits for the engine either.
                self._broadcaster.publish(Event("containers", containers))
            reading = await self._kato.read()
            self.apply(reading, self._clock())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("poller.tick_failed")
        finally:
            self.last_tick_monotonic = time.monotonic()
            if self._observe_tick is not None:
                self._observe_tick(self.last_tick_monotonic - started)
        if self._alerts is not None:
            # After the metrics are out: rules read this tick's snapshots, both of them.
            try:
                await self._alerts.evaluate(self.snapshot, containers)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alerts.evaluate_failed")

    def apply(self, reading: KatoReading, now: datetime) -> None:
        """Fold one reading into the state and publish what changed, durable events first."""
        if reading.health is not None:
            self._health = reading.health
            self._last_success = now
        if reading.metrics is not None:
            self._metrics = reading.metrics
        if reading.health_error:
            self.upstream_errors["kato_health"] += 1
        if reading.metrics_error:
            self.upstream_errors["kato_metrics"] += 1
        self._track_upstream(reading, now)
        self._track_metrics_errors(reading)

        health = reading.health
        if health is not None:
            self.reconcile(health.active_sessions, now, health.kato_time)

        self.snapshot = self._build_snapshot(reading, now)
        self._broadcaster.publish(Event("metrics", self.snapshot))

    def reconcile(self, count: int | None, now: datetime, kato_time: datetime | None) -> None:
        """A polled (or snapshot) count against what the pushes implied; one event if they
        disagree, with the net change."""
        change = self.sessions.observe(count, now, kato_time)
        if change is not None and self._session_events:
            self._broadcaster.publish(Event("session_event", change, durable=True))

    def pushed(self, change: PushedChange) -> None:
        """A session KATO pushed: published at once, with its id, and the count moves."""
        event = self.sessions.pushed(change)
        if event is not None and self._session_events:
            self._broadcaster.publish(Event("session_event", event, durable=True))

    def push_snapshot(self, count: int, kato_time: datetime | None, received: datetime) -> None:
        """The count KATO sends when the push socket opens: as good as a poll. Its timestamp
        has no offset (KATO writes local time there), so it is ordered by our clock."""
        self.reconcile(count, received, None)

    @property
    def active_sessions(self) -> int | None:
        return self.sessions.count

    def ready(self) -> bool:
        """True once a tick has completed recently: the snapshot is current, whatever it says."""
        if self.last_tick_monotonic is None or self.snapshot is None:
            return False
        return time.monotonic() - self.last_tick_monotonic <= 3 * self.interval + 1

    def _build_snapshot(self, reading: KatoReading, now: datetime) -> dict[str, Any]:
        health, metrics = self._health, self._metrics
        reachable = reading.health is not None
        errors = [error for error in (reading.health_error, reading.metrics_error) if error]
        if reading.health is not None:
            errors.extend(reading.health.problems)  # odd fields, KATO's failed health check
        return {
            "timestamp": iso(now),
            "kato": {
                "status": health.status if reachable and health else "unreachable",
                "issues": list(health.issues) if reachable and health else [],
                "resources": metrics.resources if metrics else None,
                "performance": metrics.performance if metrics else None,
                "rates": metrics.rates if metrics else None,
                "uptime_seconds": health.uptime_seconds if health else None,
                "latency_ms": health.latency_ms if reachable and health else None,
            },
            "sessions": {
                "active_count": self.sessions.count,
                "push": self._push.describe() if self._push is not None else {"state": "off"},
            },
            "stale": bool(errors),
            "error": "; ".join(errors) or None,
            "last_success": iso(self._last_success) if self._last_success else None,
        }

    def _track_upstream(self, reading: KatoReading, now: datetime) -> None:
        """One `upstream` event and one log line per change of reachability, not per tick."""
        reachable = reading.health is not None
        if reachable == self._reachable:
            return
        duration = None
        if self._reachable_since is not None:
            duration = round((now - self._reachable_since).total_seconds(), 3)
        self._reachable, self._reachable_since = reachable, now
        if reachable:
            log.info("kato.reachable", kato_url=self._kato_url, after_seconds=duration)
        else:
            log.warning(
                "kato.unreachable",
                kato_url=self._kato_url,
                error=reading.health_error,
                hint="check KATO_URL (or --kato-url) points at a running KATO",
            )
        data = {
            "timestamp": iso(now),
            "reachable": reachable,
            "status": "reachable" if reachable else "unreachable",
            "error": reading.health_error,
            "previous_state_seconds": duration,
        }
        self._broadcaster.publish(Event("upstream", data, durable=True))

    def _track_metrics_errors(self, reading: KatoReading) -> None:
        """Log when /metrics starts or stops failing while /health answers."""
        if reading.health is None or reading.metrics_error == self._metrics_error:
            return
        if reading.metrics_error:
            log.warning("kato.metrics_failing", error=reading.metrics_error)
        elif self._metrics_error:
            log.info("kato.metrics_recovered")
        self._metrics_error = reading.metrics_error
