"""KATO's part of each tick: read it, fold the reading into the `metrics` snapshot, append.

It also appends an `upstream` event (and logs one line) each time KATO becomes reachable or
unreachable, and hands every polled session count to the session monitor, which reconciles it
with what KATO pushed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import structlog

from sse_monitor.bus.event import Event
from sse_monitor.clock import iso, utc_now
from sse_monitor.monitor.sessions import SessionMonitor
from sse_monitor.sources.kato import KatoHealth, KatoMetrics, KatoReading

log = structlog.get_logger("sse_monitor.monitor.kato")


class KatoSource(Protocol):
    async def read(self) -> KatoReading: ...


class KatoMonitor:
    """Owns the latest KATO snapshot; everything it learns is appended to the log."""

    def __init__(
        self,
        kato: KatoSource,
        append: Callable[[Event], None],
        sessions: SessionMonitor,
        *,
        kato_url: str = "",
        push_state: Callable[[], dict[str, Any]] | None = None,
        upstream_errors: Counter[str] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._kato = kato
        self._append = append
        self._sessions = sessions
        self._kato_url = kato_url
        self._push_state = push_state
        self.upstream_errors = upstream_errors if upstream_errors is not None else Counter()
        self._clock = clock
        self.snapshot: dict[str, Any] | None = None
        self._health: KatoHealth | None = None
        self._metrics: KatoMetrics | None = None
        self._last_success: datetime | None = None
        self._reachable: bool | None = None
        self._reachable_since: datetime | None = None
        self._metrics_error: str | None = None

    def start_from(self, reachable: bool | None) -> None:
        """KATO's reachability as clients were last told: not announced again if unchanged."""
        self._reachable = reachable

    async def poll(self) -> None:
        """One read of KATO (bounded by the client's timeout), folded in and appended."""
        self.apply(await self._kato.read(), self._clock())

    def apply(self, reading: KatoReading, now: datetime) -> None:
        """Fold one reading into the state and append what changed, durable events first."""
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
            self._sessions.polled(health.active_sessions, now, health.kato_time)

        self.snapshot = self._build_snapshot(reading, now)
        self._append(Event("metrics", self.snapshot))

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
                "active_count": self._sessions.count,
                "push": self._push_state() if self._push_state is not None else {"state": "off"},
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
        self._append(Event("upstream", data, durable=True))

    def _track_metrics_errors(self, reading: KatoReading) -> None:
        """Log when /metrics starts or stops failing while /health answers."""
        if reading.health is None or reading.metrics_error == self._metrics_error:
            return
        if reading.metrics_error:
            log.warning("kato.metrics_failing", error=reading.metrics_error)
        elif self._metrics_error:
            log.info("kato.metrics_recovered")
        self._metrics_error = reading.metrics_error
