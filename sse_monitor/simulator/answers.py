"""KATO's own answers to `/health`, `/metrics`, `/sessions/count` and `/status`, per worker.

Each body is built as the worker that serves it would: its uptime, its counters, its caches.
The fault modes that are KATO's own failure paths ("error", "fallback", "unhealthy",
"degraded") change the body here; the transport-level ones are in faults.py.
"""

from __future__ import annotations

from typing import Any

from sse_monitor.simulator.faults import HEALTH_ONLY_MODES
from sse_monitor.simulator.state import SimulatedKato
from sse_monitor.simulator.timestamps import with_offset
from sse_monitor.simulator.workers import Worker

#: What `/status` echoes, password included, exactly as KATO does. Never forward it.
REDIS_URL = "redis://:s3cret-password@localhost:6379/0"
_METRICS_COLLECTED = 19  # KATO reports how many metric series it keeps, not collections


def health_body(kato: SimulatedKato, worker: Worker) -> dict[str, Any]:
    now = kato.clock()
    body: dict[str, Any] = {
        "status": "healthy",
        "processor_status": "healthy",
        "service_name": "kato",
        "uptime_seconds": worker.uptime(now),
        "issues": list(kato.health_issues),
        "metrics_collected": _METRICS_COLLECTED,
        "last_collection": worker.booted_at,  # KATO reports its startup time here
        "active_sessions": kato.active_count(),  # never cached
        "timestamp": with_offset(now),
    }
    mode = kato.faults.get("health").mode
    if mode == "error":  # KATO's except branch, zeros and all
        body.update(
            status="unhealthy",
            processor_status="unknown",
            issues=["Health check error: simulated fault"],
            metrics_collected=0,
            active_sessions=0,
        )
    elif mode in HEALTH_ONLY_MODES:
        body.update(status=mode, issues=[f"Simulated fault: KATO is {mode}"])
    return body


def metrics_body(kato: SimulatedKato, worker: Worker) -> dict[str, Any]:
    now = kato.clock()
    mode = kato.faults.get("metrics").mode
    if mode == "error":
        return _failed_metrics(worker, now)
    if mode == "fallback":
        return _fallback_metrics(worker, now)
    cached = worker.metrics_cache.get(now)
    if cached is not None:
        return cached
    body = _fresh_metrics(kato, worker, now)
    worker.metrics_cache.put(now, kato.metrics_cache_seconds, body)
    return body


def count_body(kato: SimulatedKato, worker: Worker) -> dict[str, Any]:
    now = kato.clock()
    cached = worker.count_cache.get(now)
    if cached is not None:
        return cached
    body = {"active_session_count": kato.active_count()}
    worker.count_cache.put(now, kato.metrics_cache_seconds, body)
    return body


def status_body(kato: SimulatedKato, worker: Worker) -> dict[str, Any]:
    return {
        "status": "healthy",
        "base_processor_id": "kato",
        "uptime_seconds": worker.uptime(kato.clock()),
        "sessions": {"active_sessions": kato.active_count(), "backend": "redis"},
        "processors": _processor_manager(),
        "redis_url": REDIS_URL,
        "version": "3.10.1",
    }


def _fresh_metrics(kato: SimulatedKato, worker: Worker, now: float) -> dict[str, Any]:
    rps = worker.requests_per_second(now)
    return {
        "timestamp": now,
        "sessions": {
            "total_created": 0.0,
            "total_deleted": 0.0,
            "active": kato.active_count(),
            "operations_total": 0.0,
        },
        "performance": {
            "total_requests": float(worker.requests),
            "total_errors": 0.0,
            "error_rate": 0.0,
            "average_response_time": worker.average_response_time(),
        },
        "resources": kato.machine.reported(worker.uptime(now)),
        "databases": _databases(0.0),
        "rates": {
            "requests_per_second": round(rps, 2),
            "requests_per_minute": round(rps * 60, 2),
            "errors_per_minute": 0,
        },
        "processor_manager": _processor_manager(),
        "uptime_seconds": None,
        "active_sessions": None,
        "error": None,
    }


def _failed_metrics(worker: Worker, now: float) -> dict[str, Any]:
    """KATO's outer failure path: HTTP 200, no figures at all, a 0 count at the top level
    whatever the truth, and an error string. It does not cache errors."""
    return {
        "error": "Metrics collection failed: simulated fault",
        "timestamp": now,
        "processor_manager": _processor_manager(),
        "uptime_seconds": worker.uptime(now),
        "active_sessions": 0,
    }


def _fallback_metrics(worker: Worker, now: float) -> dict[str, Any]:
    """KATO's collector-failure path: all-zero figures (ints), empty rates, no error key."""
    return {
        "timestamp": now,
        "sessions": {"total_created": 0, "total_deleted": 0, "active": 0, "operations_total": 0},
        "performance": {
            "total_requests": 0,
            "total_errors": 0,
            "error_rate": 0.0,
            "average_response_time": 0.0,
        },
        "resources": {"cpu_percent": 0.0, "memory_percent": 0.0, "disk_percent": 0.0},
        "databases": _databases(0),
        "rates": {},
        "processor_manager": _processor_manager(),
        "uptime_seconds": worker.uptime(now),
        "active_sessions": 0,
    }


def _databases(zero: float) -> dict[str, dict[str, float]]:
    """KATO's database figures: always zeros (written 0 or 0.0, as the path that built them)."""
    return {
        name: {"operations": zero, "errors": zero, "avg_response_time": 0.0}
        for name in ("clickhouse", "qdrant", "redis")
    }


def _processor_manager() -> dict[str, Any]:
    return {
        "total_processors": 0,
        "max_processors": 100,
        "eviction_ttl_seconds": 3600,
        "processors": [],
    }
