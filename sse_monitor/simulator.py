"""A simulated KATO: a real Starlette app that speaks KATO's HTTP API, quirks included.

KATO is not installable in CI, so the tests and `sse-monitor demo` talk to this stand-in. It
reproduces what the gateway has to cope with (the facts in the project's shared KATO notes):
several workers answering from their own counters and their own 5 s caches, `/metrics` failing
with HTTP 200, its fallback zeros, two different 404 bodies, FastAPI-style 405/422 bodies, a
`/status` that leaks the Redis password.

Routes under `/_sim/` are not KATO's: they let tests inject faults, pin figures and read counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTROL_PREFIX",
    "FAULT_MODES",
    "REDIS_URL",
    "ROUTE_TEMPLATES",
    "Fault",
    "SimulatedKato",
    "create_simulator_app",
]

#: What `/status` echoes, password included, exactly as KATO does. Never forward it.
REDIS_URL = "redis://:s3cret-password@localhost:6379/0"
#: The KATO routes, as path templates; `/_sim/stats` counts requests under these keys.
ROUTE_TEMPLATES = (
    "/health",
    "/metrics",
    "/status",
    "/sessions",
    "/sessions/count",
    "/sessions/{id}",
)
CONTROL_PREFIX = "/_sim/"
FAULT_ENDPOINTS = ("health", "metrics")
FAULT_MODES = ("ok", "error", "garbage", "http500", "slow", "unhealthy", "degraded", "fallback")
_HEALTH_ONLY_MODES = frozenset({"unhealthy", "degraded"})
_METRICS_ONLY_MODES = frozenset({"fallback"})

DEFAULT_TTL_SECONDS = 3600
DEFAULT_SLOW_DELAY = 10.0
_CPU_WARMUP_SECONDS = 10.0  # psutil's first CPU sample: KATO reports 0.0 until then
_RATE_WINDOW_SECONDS = 60.0
_WORKER_BOOT_GAP = 0.05  # workers boot one after another, so their uptimes differ a little
_METRICS_COLLECTED = 19  # KATO reports how many metric series it keeps, not collections
_DEMO_MAX_SESSIONS = 12
# name -> (low, high, random-walk step)
_RESOURCE_WALK = {
    "cpu_percent": (0.5, 95.0, 4.0),
    "memory_percent": (1.0, 90.0, 0.6),
    "disk_percent": (5.0, 95.0, 0.05),
}
_WORKER_SCOPE_KEY = "sse_monitor.simulator.worker"


@dataclass
class Fault:
    """What an endpoint does instead of (or before) answering normally."""

    mode: str = "ok"
    delay: float = DEFAULT_SLOW_DELAY


@dataclass
class _Session:
    session_id: str
    node_id: str
    created_at: float
    expires_at: float
    ttl_seconds: int
    metadata: dict[str, Any]
    config: dict[str, Any]


class _Worker:
    """One KATO worker process: its own request counters, uptime and caches."""

    def __init__(self, booted_at: float) -> None:
        self.booted_at = booted_at
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.timed_requests = 0
        self.response_time_total = 0.0
        self.recent: deque[tuple[float, int]] = deque()  # (when, how many) for the rates
        self.metrics_cache: tuple[float, dict[str, Any]] | None = None  # (expires_at, body)
        self.count_cache: tuple[float, dict[str, Any]] | None = None

    def uptime(self, now: float) -> float:
        return max(0.0, now - self.booted_at)

    def record_requests(self, now: float, count: int = 1) -> None:
        self.requests += count
        self.recent.append((now, count))
        self._trim(now)

    def record_response_time(self, seconds: float, count: int = 1) -> None:
        self.timed_requests += count
        self.response_time_total += seconds * count

    def average_response_time(self) -> float:
        if not self.timed_requests:
            return 0.0
        return round(self.response_time_total / self.timed_requests, 6)

    def requests_per_second(self, now: float) -> float:
        self._trim(now)
        span = max(1.0, min(_RATE_WINDOW_SECONDS, self.uptime(now)))
        return sum(count for _, count in self.recent) / span

    def _trim(self, now: float) -> None:
        while self.recent and self.recent[0][0] <= now - _RATE_WINDOW_SECONDS:
            self.recent.popleft()


class SimulatedKato:
    """In-memory state of the simulated KATO (sessions, counters, faults).

    Sessions are shared by all workers, as KATO's are through Redis; counters and caches are
    per worker. Every time-dependent figure reads `clock`, so tests can drive time.
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        metrics_cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if metrics_cache_seconds < 0:
            raise ValueError("metrics_cache_seconds must not be negative")
        self.metrics_cache_seconds = metrics_cache_seconds
        self._clock = clock
        self._rng = random.Random(seed)
        now = clock()
        self._workers = [
            _Worker(booted_at=now - _WORKER_BOOT_GAP * (workers - 1 - index))
            for index in range(workers)
        ]
        self._next_worker = 0
        self._sessions: dict[str, _Session] = {}
        self._requests = dict.fromkeys(ROUTE_TEMPLATES, 0)
        self._faults = {endpoint: Fault() for endpoint in FAULT_ENDPOINTS}
        self._resources = {
            "cpu_percent": round(self._rng.uniform(2.0, 8.0), 1),
            "memory_percent": round(self._rng.uniform(2.0, 6.0), 1),
            "disk_percent": round(self._rng.uniform(15.0, 40.0), 1),
        }
        self._pinned: dict[str, float] = {}
        self._issues: list[str] = []
        self._demo_sessions = 0

    @property
    def workers(self) -> int:
        return len(self._workers)

    # Sessions (shared store, like KATO's Redis)

    def create_session(
        self,
        node_id: str,
        ttl_seconds: int | None = None,
        metadata: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a session and return KATO's SessionResponse for it."""
        ttl = ttl_seconds or DEFAULT_TTL_SECONDS  # KATO treats 0 as "not given"
        if ttl < 0:
            raise ValueError("ttl_seconds must not be negative")
        now = self._clock()
        token = uuid.UUID(int=self._rng.getrandbits(128), version=4).hex
        session = _Session(
            session_id=f"session-{token}-{int(now * 1000)}",
            node_id=node_id,
            created_at=now,
            expires_at=now + ttl,
            ttl_seconds=ttl,
            metadata=dict(metadata or {}),
            config=dict(config or {}),
        )
        self._sessions[session.session_id] = session
        return _session_response(session, ttl)

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        """Return a live session's SessionResponse, sliding its TTL as KATO's Redis mode does."""
        session = self._live_session(session_id)
        if session is None:
            return None
        now = self._clock()
        session.expires_at = now + session.ttl_seconds
        return _session_response(session, max(0, int(session.expires_at - now)))

    def delete_session(self, session_id: str) -> bool:
        """Delete a live session; False if it does not exist or has expired."""
        if self._live_session(session_id) is None:
            return False
        del self._sessions[session_id]
        return True

    def expire_session(self, session_id: str) -> bool:
        """Make a live session expire now, as a TTL would: no DELETE, no event."""
        session = self._live_session(session_id)
        if session is None:
            return False
        session.expires_at = self._clock()
        return True

    def active_count(self) -> int:
        """Live sessions; those past their TTL are purged here rather than by a timer."""
        self._purge()
        return len(self._sessions)

    def _live_session(self, session_id: str) -> _Session | None:
        self._purge()
        return self._sessions.get(session_id)

    def _purge(self) -> None:
        now = self._clock()
        expired = [sid for sid, s in self._sessions.items() if s.expires_at <= now]
        for session_id in expired:
            del self._sessions[session_id]

    # Faults, pinned figures, counters (the /_sim/ controls)

    def set_fault(self, endpoint: str, mode: str, *, delay: float = DEFAULT_SLOW_DELAY) -> None:
        """Make `endpoint` ("health", "metrics" or "all") misbehave; mode "ok" clears."""
        if endpoint not in (*FAULT_ENDPOINTS, "all"):
            raise ValueError(f"endpoint must be one of health, metrics, all; got {endpoint!r}")
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}; got {mode!r}")
        if not math.isfinite(delay) or delay < 0:
            raise ValueError("delay must be a non-negative number of seconds")
        targets = FAULT_ENDPOINTS if endpoint == "all" else (endpoint,)
        if mode in _HEALTH_ONLY_MODES:
            if endpoint == "metrics":
                raise ValueError(f"mode {mode!r} applies to /health only")
            targets = ("health",)
        if mode in _METRICS_ONLY_MODES:
            if endpoint == "health":
                raise ValueError(f"mode {mode!r} applies to /metrics only")
            targets = ("metrics",)
        for target in targets:
            self._faults[target] = Fault(mode, delay)

    def fault(self, endpoint: str) -> Fault:
        return self._faults[endpoint]

    def pin_resources(self, values: Mapping[str, float | None]) -> None:
        """Hold resource figures where a test wants them; None lets a figure move again."""
        for name, value in values.items():
            if name not in _RESOURCE_WALK:
                raise ValueError(f"unknown resource {name!r}")
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0.0 <= value <= 100.0
            ):
                raise ValueError(f"{name} must be a number from 0 to 100, or null")
        for name, value in values.items():
            if value is None:
                self._pinned.pop(name, None)
            else:
                self._pinned[name] = float(value)

    def resources(self) -> dict[str, float]:
        """Whole-machine figures as they stand (pinned ones included, no CPU warm-up)."""
        return {**self._resources, **self._pinned}

    def request_counts(self) -> dict[str, int]:
        """Requests per KATO route template, summed over workers."""
        return dict(self._requests)

    def set_health_issues(self, issues: Sequence[str]) -> None:
        """Issues /health reports while healthy (KATO lists warnings there), e.g. long ones."""
        self._issues = list(issues)

    def reset(self) -> None:
        """Back to a fresh start: no sessions, faults, pins or counts (uptime keeps running)."""
        self._sessions.clear()
        self._faults = {endpoint: Fault() for endpoint in FAULT_ENDPOINTS}
        self._requests = dict.fromkeys(ROUTE_TEMPLATES, 0)
        self._pinned.clear()
        self._issues = []
        self._next_worker = 0
        for worker in self._workers:
            worker.reset()

    def _take_worker(self) -> _Worker:
        worker = self._workers[self._next_worker]
        self._next_worker = (self._next_worker + 1) % len(self._workers)
        worker.record_requests(self._clock())
        return worker

    def _count_request(self, template: str) -> None:
        self._requests[template] = self._requests.get(template, 0) + 1

    # Response bodies, as the given worker (by default the first) would answer

    def _pick(self, worker: _Worker | None) -> _Worker:
        return self._workers[0] if worker is None else worker

    def health(self, worker: _Worker | None = None) -> dict[str, Any]:
        worker = self._pick(worker)
        now = self._clock()
        body: dict[str, Any] = {
            "status": "healthy",
            "processor_status": "healthy",
            "service_name": "kato",
            "uptime_seconds": worker.uptime(now),
            "issues": list(self._issues),
            "metrics_collected": _METRICS_COLLECTED,
            "last_collection": worker.booted_at,  # KATO reports its startup time here
            "active_sessions": self.active_count(),  # never cached
            "timestamp": _isoformat(now),
        }
        mode = self._faults["health"].mode
        if mode == "error":  # KATO's except branch, zeros and all
            body.update(
                status="unhealthy",
                processor_status="unknown",
                issues=["Health check error: simulated fault"],
                metrics_collected=0,
                active_sessions=0,
            )
        elif mode in _HEALTH_ONLY_MODES:
            body.update(status=mode, issues=[f"Simulated fault: KATO is {mode}"])
        return body

    def metrics(self, worker: _Worker | None = None) -> dict[str, Any]:
        worker = self._pick(worker)
        now = self._clock()
        mode = self._faults["metrics"].mode
        if mode == "error":
            # KATO's outer failure path: HTTP 200, no figures at all, a 0 count at the top
            # level whatever the truth, and an error string. It does not cache errors.
            return {
                "error": "Metrics collection failed: simulated fault",
                "timestamp": now,
                "processor_manager": _processor_manager(),
                "uptime_seconds": worker.uptime(now),
                "active_sessions": 0,
            }
        if mode == "fallback":
            # KATO's collector-failure path: all-zero figures, empty rates, no error key.
            return {
                "timestamp": now,
                "sessions": {
                    "total_created": 0,
                    "total_deleted": 0,
                    "active": 0,
                    "operations_total": 0,
                },
                "performance": {
                    "total_requests": 0,
                    "total_errors": 0,
                    "error_rate": 0.0,
                    "average_response_time": 0.0,
                },
                "resources": {"cpu_percent": 0.0, "memory_percent": 0.0, "disk_percent": 0.0},
                "databases": {
                    name: {"operations": 0, "errors": 0, "avg_response_time": 0.0}
                    for name in ("clickhouse", "qdrant", "redis")
                },
                "rates": {},
                "processor_manager": _processor_manager(),
                "uptime_seconds": worker.uptime(now),
                "active_sessions": 0,
            }
        if worker.metrics_cache is not None and now < worker.metrics_cache[0]:
            return worker.metrics_cache[1]
        rps = worker.requests_per_second(now)
        body = {
            "timestamp": now,
            "sessions": {
                "total_created": 0.0,
                "total_deleted": 0.0,
                "active": self.active_count(),
                "operations_total": 0.0,
            },
            "performance": {
                "total_requests": float(worker.requests),
                "total_errors": 0.0,
                "error_rate": 0.0,
                "average_response_time": worker.average_response_time(),
            },
            "resources": self._resource_figures(worker, now),
            "databases": {
                name: {"operations": 0.0, "errors": 0.0, "avg_response_time": 0.0}
                for name in ("clickhouse", "qdrant", "redis")
            },
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
        if self.metrics_cache_seconds > 0:
            worker.metrics_cache = (now + self.metrics_cache_seconds, body)
        return body

    def session_count(self, worker: _Worker | None = None) -> dict[str, Any]:
        worker = self._pick(worker)
        now = self._clock()
        if worker.count_cache is not None and now < worker.count_cache[0]:
            return worker.count_cache[1]
        body = {"active_session_count": self.active_count()}
        if self.metrics_cache_seconds > 0:
            worker.count_cache = (now + self.metrics_cache_seconds, body)
        return body

    def status(self, worker: _Worker | None = None) -> dict[str, Any]:
        worker = self._pick(worker)
        return {
            "status": "healthy",
            "base_processor_id": "kato",
            "uptime_seconds": worker.uptime(self._clock()),
            "sessions": {"active_sessions": self.active_count(), "backend": "redis"},
            "processors": _processor_manager(),
            "redis_url": REDIS_URL,
            "version": "3.10.1",
        }

    def _resource_figures(self, worker: _Worker, now: float) -> dict[str, float]:
        figures = self.resources()
        if worker.uptime(now) < _CPU_WARMUP_SECONDS and "cpu_percent" not in self._pinned:
            figures["cpu_percent"] = 0.0
        return figures

    # Demo activity

    def activity_step(self) -> None:
        """Move the simulated world one tick, so that a live dashboard has something to show."""
        rng = self._rng
        now = self._clock()
        self._move_sessions()
        for name, (low, high, step) in _RESOURCE_WALK.items():
            value = self._resources[name] + rng.gauss(0.0, step)
            if value < low:  # reflect off the bounds so figures do not stick to them
                value = 2 * low - value
            elif value > high:
                value = 2 * high - value
            self._resources[name] = round(min(high, max(low, value)), 1)
        for worker in self._workers:  # other clients' traffic, for the request figures
            count = rng.randint(0, 25)
            worker.record_requests(now, count)
            worker.record_response_time(rng.uniform(0.0008, 0.004), count)

    def _move_sessions(self) -> None:
        rng = self._rng
        if rng.random() < 0.3:
            return  # a quiet tick
        count = self.active_count()
        burst = 1 if rng.random() < 0.7 else rng.randint(2, 4)
        create_bias = 0.8 if count < 3 else 0.2 if count > _DEMO_MAX_SESSIONS - 3 else 0.5
        if rng.random() < create_bias:
            for _ in range(min(burst, _DEMO_MAX_SESSIONS - count)):
                self._demo_sessions += 1
                self.create_session(f"demo-{self._demo_sessions}", ttl_seconds=rng.randint(30, 300))
        else:
            for session_id in rng.sample(sorted(self._sessions), min(burst, count)):
                self.delete_session(session_id)


def _isoformat(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")


def _zulu(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _session_response(session: _Session, ttl_seconds: int) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "node_id": session.node_id,
        "created_at": _zulu(session.created_at),
        "expires_at": _zulu(session.expires_at),
        "ttl_seconds": ttl_seconds,
        "metadata": dict(session.metadata),
        "session_config": dict(session.config),
    }


def _processor_manager() -> dict[str, Any]:
    return {
        "total_processors": 0,
        "max_processors": 100,
        "eviction_ttl_seconds": 3600,
        "processors": [],
    }


# Request validation, shaped like FastAPI's (pydantic v2) 422 details

_Errors = list[dict[str, Any]]


def _parse_create_request(raw: bytes) -> tuple[dict[str, Any], _Errors]:
    """Validate a POST /sessions body as KATO's CreateSessionRequest model would."""
    if not raw:
        return {}, [_error("missing", ["body"], "Field required", None)]
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        error = _error("json_invalid", ["body", exc.pos], "JSON decode error", {})
        error["ctx"] = {"error": exc.msg}
        return {}, [error]
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        return {}, [_error("model_attributes_type", ["body"], msg, body)]

    errors: _Errors = []
    if "node_id" not in body:
        errors.append(_error("missing", ["body", "node_id"], "Field required", body))
    elif not isinstance(body["node_id"], str):
        msg = "Input should be a valid string"
        errors.append(_error("string_type", ["body", "node_id"], msg, body["node_id"]))
    for name in ("metadata", "config"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            msg = "Input should be a valid dictionary"
            errors.append(_error("dict_type", ["body", name], msg, value))
    ttl, ttl_error = _lax_int(body.get("ttl_seconds"))
    if ttl_error is not None:
        errors.append(ttl_error)
    parsed = {
        "node_id": body.get("node_id"),
        "metadata": body.get("metadata"),
        "config": body.get("config"),
        "ttl_seconds": ttl,
    }
    return parsed, errors


def _lax_int(value: Any) -> tuple[int | None, dict[str, Any] | None]:
    """Coerce like pydantic's lax `int | None`: bools, whole floats and numeric strings pass."""
    loc = ["body", "ttl_seconds"]
    if value is None or isinstance(value, int):
        return (None if value is None else int(value)), None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, _error("finite_number", loc, "Input should be a finite number", value)
        if not value.is_integer():
            msg = "Input should be a valid integer, got a number with a fractional part"
            return None, _error("int_from_float", loc, msg, value)
        return int(value), None
    if isinstance(value, str):
        try:
            return int(value.strip()), None
        except ValueError:
            msg = "Input should be a valid integer, unable to parse string as an integer"
            return None, _error("int_parsing", loc, msg, value)
    return None, _error("int_type", loc, "Input should be a valid integer", value)


def _error(kind: str, loc: Sequence[str | int], msg: str, value: Any) -> dict[str, Any]:
    return {"type": kind, "loc": list(loc), "msg": msg, "input": value}


# KATO endpoints


def _kato(request: Request) -> SimulatedKato:
    kato: SimulatedKato = request.app.state.kato
    return kato


def _worker(request: Request) -> _Worker:
    worker: _Worker = request.scope[_WORKER_SCOPE_KEY]
    return worker


async def _faulty_response(kato: SimulatedKato, endpoint: str) -> Response | None:
    """Apply a transport-level fault; returns the response that replaces KATO's, if any."""
    fault = kato.fault(endpoint)
    if fault.mode == "slow":
        await asyncio.sleep(fault.delay)
    elif fault.mode == "garbage":
        return Response("<html>oops", media_type="text/html")
    elif fault.mode == "http500":
        return PlainTextResponse("Internal Server Error", status_code=500)
    return None


async def health(request: Request) -> Response:
    kato = _kato(request)
    if (faulty := await _faulty_response(kato, "health")) is not None:
        return faulty
    return JSONResponse(kato.health(_worker(request)))


async def metrics(request: Request) -> Response:
    kato = _kato(request)
    if (faulty := await _faulty_response(kato, "metrics")) is not None:
        return faulty
    return JSONResponse(kato.metrics(_worker(request)))


async def status(request: Request) -> Response:
    return JSONResponse(_kato(request).status(_worker(request)))


async def session_count(request: Request) -> Response:
    return JSONResponse(_kato(request).session_count(_worker(request)))


async def create_session(request: Request) -> Response:
    parsed, errors = _parse_create_request(await request.body())
    if errors:
        return JSONResponse({"detail": errors}, status_code=422)
    try:
        session = _kato(request).create_session(**parsed)
    except ValueError:  # Redis refuses a negative expiry; KATO does not catch it
        return PlainTextResponse("Internal Server Error", status_code=500)
    return JSONResponse(session)


async def get_session(request: Request) -> Response:
    session_id = request.path_params["id"]
    session = _kato(request).get_session(session_id)
    if session is None:
        return JSONResponse(
            {"detail": f"Session {session_id} not found or expired"}, status_code=404
        )
    return JSONResponse(session)


async def delete_session(request: Request) -> Response:
    session_id = request.path_params["id"]
    if not _kato(request).delete_session(session_id):
        return JSONResponse({"detail": f"Session {session_id} not found"}, status_code=404)
    return JSONResponse({"status": "deleted", "session_id": session_id})


# Control endpoints (not KATO's)


async def sim_stats(request: Request) -> Response:
    return JSONResponse({"requests": _kato(request).request_counts()})


async def sim_fault(request: Request) -> Response:
    body = await _json_object(request)
    if body is None:
        return _bad_request("body must be a JSON object")
    delay = body.get("delay", DEFAULT_SLOW_DELAY)
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        return _bad_request("delay must be a number of seconds")
    try:
        _kato(request).set_fault(
            str(body.get("endpoint")), str(body.get("mode")), delay=float(delay)
        )
    except ValueError as exc:
        return _bad_request(str(exc))
    return JSONResponse({"ok": True})


async def sim_reset(request: Request) -> Response:
    _kato(request).reset()
    return JSONResponse({"ok": True})


async def sim_expire(request: Request) -> Response:
    body = await _json_object(request)
    if body is None or not isinstance(body.get("session_id"), str):
        return _bad_request('body must be {"session_id": "..."}')
    session_id = body["session_id"]
    if not _kato(request).expire_session(session_id):
        return JSONResponse({"error": f"no live session {session_id}"}, status_code=404)
    return JSONResponse({"ok": True})


async def sim_resources(request: Request) -> Response:
    body = await _json_object(request)
    if body is None:
        return _bad_request("body must be a JSON object")
    try:
        _kato(request).pin_resources(body)
    except ValueError as exc:
        return _bad_request(str(exc))
    return JSONResponse({"ok": True})


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _bad_request(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Render routing errors as FastAPI does: `{"detail": ...}` with the exception's headers."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _route(path: str, endpoint: Callable[[Request], Any], method: str) -> Route:
    route = Route(path, endpoint, methods=[method])
    route.methods = {method}  # FastAPI does not add HEAD to GET routes: HEAD gets a 405
    return route


class _KatoMiddleware:
    """KATO's middleware stack in one: trace ids, worker choice, and the session check.

    KATO's session middleware answers for any non-GET request under `/sessions/<id>` whose
    session is gone, before routing: hence the second 404 body, even on `DELETE`.
    """

    def __init__(self, app: ASGIApp, kato: SimulatedKato, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.kato = kato
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra_headers = {"X-Trace-ID": uuid.uuid4().hex}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra_headers.items():
                    headers.append(name, value)
            await send(message)

        path: str = scope["path"]
        if path.startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send_with_headers)
            return

        worker = self.kato._take_worker()
        scope[_WORKER_SCOPE_KEY] = worker
        template = self._template(scope)
        if template is not None:
            self.kato._count_request(template)
        started = time.perf_counter()
        try:
            session_id = _session_scoped_id(path, scope["method"])
            if session_id is not None:
                if self.kato.get_session(session_id) is None:
                    response = JSONResponse(
                        {
                            "error": {
                                "code": "SESSION_NOT_FOUND",
                                "message": f"Session {session_id} not found or expired",
                                "session_id": session_id,
                            }
                        },
                        status_code=404,
                    )
                    await response(scope, receive, send_with_headers)
                    return
                extra_headers["X-Session-ID"] = session_id
            await self.app(scope, receive, send_with_headers)
        finally:
            worker.record_response_time(time.perf_counter() - started)

    def _template(self, scope: Scope) -> str | None:
        """The KATO route template the router will pick (or 405 on), if any."""
        partial: str | None = None
        for route in self.routes:
            if not isinstance(route, Route) or route.path not in ROUTE_TEMPLATES:
                continue
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route.path
            if match is Match.PARTIAL and partial is None:
                partial = route.path
        return partial


def _session_scoped_id(path: str, method: str) -> str | None:
    """The session id KATO's session middleware validates for this request, if any."""
    parts = path.split("/")
    if not path.startswith("/sessions/") or not parts[2]:
        return None
    if len(parts) == 3 and method == "GET":
        return None  # GET /sessions/{id} (and /sessions/count) are left to the endpoint
    return parts[2]


async def _run_activity(kato: SimulatedKato, interval: float) -> None:
    while True:
        await asyncio.sleep(interval * kato._rng.uniform(0.5, 1.5))
        kato.activity_step()


def create_simulator_app(
    kato: SimulatedKato | None = None,
    *,
    activity: bool = False,
    activity_interval: float = 2.0,
) -> Starlette:
    """Build the simulated KATO; `activity=True` makes sessions and figures move on their own."""
    kato = kato if kato is not None else SimulatedKato()
    routes: list[BaseRoute] = [
        _route("/health", health, "GET"),
        _route("/metrics", metrics, "GET"),
        _route("/status", status, "GET"),
        _route("/sessions", create_session, "POST"),
        _route("/sessions/count", session_count, "GET"),
        _route("/sessions/{id}", get_session, "GET"),
        _route("/sessions/{id}", delete_session, "DELETE"),
        _route("/_sim/stats", sim_stats, "GET"),
        _route("/_sim/fault", sim_fault, "POST"),
        _route("/_sim/reset", sim_reset, "POST"),
        _route("/_sim/expire", sim_expire, "POST"),
        _route("/_sim/resources", sim_resources, "POST"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_run_activity(kato, activity_interval)) if activity else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(_KatoMiddleware, kato=kato, routes=routes),
            Middleware(
                CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"]
            ),
        ],
        exception_handlers={HTTPException: http_exception},
        lifespan=lifespan,
    )
    app.state.kato = kato
    return app
