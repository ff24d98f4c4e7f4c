"""A simulated KATO: a real Starlette app that speaks KATO's HTTP API, quirks included.

KATO is not installable in CI, so the tests and `sse-monitor demo` talk to this stand-in. It
reproduces what the gateway has to cope with (the facts in the project's shared KATO notes):
several workers answering from their own counters and their own 5 s caches, `/metrics` failing
with HTTP 200, its fallback zeros, two different 404 bodies, FastAPI-style 405/422 bodies, a
`/status` that leaks the Redis password.

With `session_backend="redis"` it also behaves as KATO on its Redis session backend: sessions
created or deleted over HTTP are pushed on `/ws/events` to the sockets of the worker that served
the request (only those), a session that expires by TTL is announced nowhere and stays counted,
and with a `redis_url` every session is written to that real Redis in KATO's key layout.

Routes under `/_sim/` are not KATO's: they let tests inject faults, pin figures and read counters.
A request may name the worker that serves it with the `X-Sim-Worker: <index>` header.
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
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from sse_monitor.canned import CannedAnswer, parse_answer

__all__ = [
    "ACTIVE_INDEX_KEY",
    "CONTROL_PREFIX",
    "FAULT_MODES",
    "PUSH_MODES",
    "REDIS_URL",
    "ROUTE_TEMPLATES",
    "SESSION_BACKENDS",
    "SESSION_KEY_PREFIX",
    "WORKER_HEADER",
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
FAULT_MODES = (
    "ok",
    "error",
    "garbage",
    "http500",
    "slow",
    "unhealthy",
    "degraded",
    "fallback",
    "serve",  # a canned answer the test gives (see sse_monitor.canned): hostile input
)
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

SESSION_BACKENDS = ("memory", "redis")
#: KATO's keys in its Redis: `<prefix><session_id>` holds the session, the index is a SET.
SESSION_KEY_PREFIX = "kato:session:"
ACTIVE_INDEX_KEY = "kato:session:_active_index"
_REDIS_TIMEOUT = 5.0  # a stuck Redis fails the request (as in KATO) instead of hanging it
#: `/_sim/push` modes: "refuse" turns new /ws/events handshakes away, "drop" closes open sockets.
PUSH_MODES = ("on", "refuse", "drop")
_REFUSE_CLOSE_CODE = 1008  # closed before accept: the client sees HTTP 403
_DROP_CLOSE_CODE = 1012  # "service restart", what a restarting KATO worker sends
#: Names the worker that serves a request (HTTP or WebSocket handshake), instead of round robin.
WORKER_HEADER = "X-Sim-Worker"

# One open /ws/events socket: the texts to send it, in order; None ends it.
_Outbox = asyncio.Queue[str | None]


@dataclass
class Fault:
    """What an endpoint does instead of (or before) answering normally."""

    mode: str = "ok"
    delay: float = DEFAULT_SLOW_DELAY
    answer: CannedAnswer | None = None  # what mode "serve" serves


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
        self.sockets: set[_Outbox] = set()  # open connections outlive a /_sim/reset
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
    """In-memory state of the simulated KATO (sessions, counters, faults, push sockets).

    Sessions are shared by all workers, as KATO's are through Redis; counters, caches and
    /ws/events sockets are per worker. Every time-dependent figure reads `clock`, so tests can
    drive time. `session_backend="redis"` adds KATO's Redis-mode behaviour (push events, a count
    that expiry never lowers); `redis_url` also mirrors the sessions into that real Redis while
    the app runs (TTLs there are real seconds, whatever `clock` says).
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        metrics_cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        session_backend: str = "memory",
        redis_url: str | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if metrics_cache_seconds < 0:
            raise ValueError("metrics_cache_seconds must not be negative")
        if session_backend not in SESSION_BACKENDS:
            raise ValueError(f"session_backend must be memory or redis; got {session_backend!r}")
        if redis_url is not None and session_backend != "redis":
            raise ValueError('redis_url needs session_backend="redis"')
        self.session_backend = session_backend
        self.redis_url = redis_url
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
        # KATO's `_active_index` (redis backend): only an explicit DELETE removes an id from it.
        self._index: set[str] = set()
        self._redis: _RedisStore | None = None  # open while the app runs, with a redis_url
        self.push_mode = "on"
        self._pushed = 0

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
        if self.session_backend == "redis":
            self._index.add(session.session_id)
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
        self._index.discard(session_id)
        return True

    def expire_session(self, session_id: str) -> bool:
        """Make a live session expire now, as a TTL would: no DELETE, no event, still indexed."""
        session = self._live_session(session_id)
        if session is None:
            return False
        session.expires_at = self._clock()
        return True

    def active_count(self) -> int:
        """The count KATO reports: live sessions, or in redis mode SCARD of its index.

        In redis mode a session that expired by TTL stays in the index, so it is still counted:
        the count drops only on an explicit DELETE (KATO's quirk).
        """
        live = self._live_count()
        return len(self._index) if self.session_backend == "redis" else live

    def _live_count(self) -> int:
        """Sessions not past their TTL; those past it are purged here rather than by a timer."""
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

    def set_fault(
        self,
        endpoint: str,
        mode: str,
        *,
        delay: float = DEFAULT_SLOW_DELAY,
        answer: CannedAnswer | None = None,
    ) -> None:
        """Make `endpoint` ("health", "metrics" or "all") misbehave; mode "ok" clears."""
        if endpoint not in (*FAULT_ENDPOINTS, "all"):
            raise ValueError(f"endpoint must be one of health, metrics, all; got {endpoint!r}")
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}; got {mode!r}")
        if not math.isfinite(delay) or delay < 0:
            raise ValueError("delay must be a non-negative number of seconds")
        if (mode == "serve") != (answer is not None):
            raise ValueError('mode "serve" (and only it) needs a response to serve')
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
            self._faults[target] = Fault(mode, delay, answer)

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
        """Back to a fresh start: no sessions, faults, pins or counts (uptime keeps running).

        Open /ws/events sockets stay open; the mirror in Redis is cleared by `after_reset`.
        """
        self._sessions.clear()
        self._index.clear()
        self.push_mode = "on"
        self._pushed = 0
        self._faults = {endpoint: Fault() for endpoint in FAULT_ENDPOINTS}
        self._requests = dict.fromkeys(ROUTE_TEMPLATES, 0)
        self._pinned.clear()
        self._issues = []
        self._next_worker = 0
        for worker in self._workers:
            worker.reset()

    def _take_worker(self, index: int | None = None) -> _Worker:
        """The worker that serves a request: the next in turn, or the one a test named."""
        worker = self._next_in_turn() if index is None else self._workers[index]
        worker.record_requests(self._clock())
        return worker

    def _next_in_turn(self) -> _Worker:
        worker = self._workers[self._next_worker]
        self._next_worker = (self._next_worker + 1) % len(self._workers)
        return worker

    def _count_request(self, template: str) -> None:
        self._requests[template] = self._requests.get(template, 0) + 1

    # /ws/events sockets (call these from the app's event loop: the outboxes are asyncio queues)

    def connect_socket(self, index: int | None = None) -> _Outbox:
        """Give a new /ws/events socket to a worker (the next in turn, or `index`).

        KATO's snapshot is queued before the socket joins its worker, so it always comes first.
        """
        worker = self._next_in_turn() if index is None else self._workers[index]
        outbox: _Outbox = asyncio.Queue()
        snapshot = {
            "event_type": "state.snapshot",
            "timestamp": _naive_isoformat(self._clock()),  # KATO's datetime.now(): no offset
            "data": {"active_sessions": self.active_count(), "system_status": "healthy"},
        }
        outbox.put_nowait(json.dumps(snapshot))
        worker.sockets.add(outbox)
        return outbox

    def disconnect_socket(self, outbox: _Outbox) -> None:
        for worker in self._workers:
            worker.sockets.discard(outbox)

    def set_push_mode(self, mode: str) -> int:
        """Apply a `/_sim/push` mode; returns how many sockets "drop" closed.

        "drop" is a one-off: it closes every open socket and leaves the mode as it was, so
        "refuse" then "drop" cuts push off until "on".
        """
        if mode not in PUSH_MODES:
            raise ValueError(f"mode must be one of {', '.join(PUSH_MODES)}; got {mode!r}")
        if mode != "drop":
            self.push_mode = mode
            return 0
        dropped = 0
        for worker in self._workers:
            for outbox in worker.sockets:
                outbox.put_nowait(None)
                dropped += 1
            worker.sockets.clear()  # gone from the stats at once, though closing takes a moment
        return dropped

    def push_stats(self) -> dict[str, Any]:
        by_worker = [len(worker.sockets) for worker in self._workers]
        return {
            "websockets": sum(by_worker),
            "websockets_by_worker": by_worker,
            "pushed": self._pushed,
        }

    def _push(self, worker: _Worker, event: dict[str, Any]) -> None:
        """Queue an event for the sockets of the worker that made it (no cross-worker fan-out)."""
        if self.session_backend != "redis":
            return  # KATO's in-memory sessions push nothing
        text = json.dumps(event)
        for outbox in worker.sockets:
            outbox.put_nowait(text)
            self._pushed += 1

    # What KATO does after a session change, in its order: Redis first, then the push

    async def open_redis(self) -> None:
        """Connect the Redis mirror (with a `redis_url`); fails fast if Redis does not answer."""
        if self.redis_url is not None and self._redis is None:
            store = _RedisStore(self.redis_url)
            try:
                await store.ping()
            except BaseException:
                await store.close()
                raise
            self._redis = store

    async def close_redis(self) -> None:
        store, self._redis = self._redis, None
        if store is not None:
            await store.close()

    async def after_create(self, session_id: str, worker: _Worker) -> None:
        """The session goes into Redis, then `session.created` to the serving worker's sockets."""
        session = self._sessions.get(session_id)
        if session is None:
            return
        if self._redis is not None:
            await self._redis.save(session)
        now = self._clock()
        data = {
            "session_id": session_id,
            "node_id": session.node_id,
            "created_at": _isoformat(session.created_at),
        }
        self._push(worker, _event("session.created", now, data))

    async def after_delete(self, session_id: str, worker: _Worker) -> None:
        """DEL and SREM in Redis, then `session.destroyed` to the serving worker's sockets."""
        if self._redis is not None:
            await self._redis.remove(session_id)
        now = self._clock()
        data = {
            "session_id": session_id,
            "destroyed_at": _isoformat(now),
            "reason": "explicit_delete",
        }
        self._push(worker, _event("session.destroyed", now, data))

    async def after_get(self, session_id: str) -> None:
        """A GET slid the session's TTL: KATO slides the key's TTL too (EXPIRE, data unchanged)."""
        session = self._sessions.get(session_id)
        if session is not None and self._redis is not None:
            await self._redis.slide(session_id, session.ttl_seconds)

    async def after_expire(self, session_id: str) -> None:
        """A TTL ran out: Redis drops the key, the index keeps the id, nobody is told."""
        if self._redis is not None:
            await self._redis.expire(session_id)

    async def after_reset(self) -> None:
        """/_sim/reset: KATO's keys go from Redis too, so the next test starts clean."""
        if self._redis is not None:
            await self._redis.clear()

    async def activity_tick(self) -> None:
        """One demo tick, side effects included: each change is served by the next worker."""
        for change, session_id in self.activity_step():
            worker = self._next_in_turn()
            if change == "created":
                await self.after_create(session_id, worker)
            else:
                await self.after_delete(session_id, worker)

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

    def activity_step(self) -> list[tuple[str, str]]:
        """Move the simulated world one tick, so that a live dashboard has something to show.

        Returns the session changes made, as ("created" or "destroyed", session_id) pairs.
        """
        rng = self._rng
        now = self._clock()
        changes = self._move_sessions()
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
        return changes

    def _move_sessions(self) -> list[tuple[str, str]]:
        rng = self._rng
        if rng.random() < 0.3:
            return []  # a quiet tick
        # Live sessions, not the reported count: in redis mode that one also holds expired ids.
        count = self._live_count()
        burst = 1 if rng.random() < 0.7 else rng.randint(2, 4)
        create_bias = 0.8 if count < 3 else 0.2 if count > _DEMO_MAX_SESSIONS - 3 else 0.5
        changes: list[tuple[str, str]] = []
        if rng.random() < create_bias:
            for _ in range(min(burst, _DEMO_MAX_SESSIONS - count)):
                self._demo_sessions += 1
                ttl = rng.randint(30, 300)
                session = self.create_session(f"demo-{self._demo_sessions}", ttl_seconds=ttl)
                changes.append(("created", session["session_id"]))
        else:
            for session_id in rng.sample(sorted(self._sessions), min(burst, count)):
                self.delete_session(session_id)
                changes.append(("destroyed", session_id))
        return changes


def _isoformat(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")


def _naive_isoformat(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .replace(tzinfo=None)
        .isoformat(timespec="microseconds")
    )


def _event(event_type: str, timestamp: float, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_type": event_type, "timestamp": _isoformat(timestamp), "data": data}


class _RedisStore:
    """KATO's session keys in a real Redis, written as KATO writes them, for its readers."""

    def __init__(self, url: str) -> None:
        import redis.asyncio  # only needed with a redis_url

        self._client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT
        )

    async def ping(self) -> None:
        await self._client.ping()

    async def save(self, session: _Session) -> None:
        body = json.dumps(_session_response(session, session.ttl_seconds))
        await self._client.set(_session_key(session.session_id), body, ex=session.ttl_seconds)
        await self._client.sadd(ACTIVE_INDEX_KEY, session.session_id)

    async def remove(self, session_id: str) -> None:
        await self._client.delete(_session_key(session_id))
        await self._client.srem(ACTIVE_INDEX_KEY, session_id)

    async def slide(self, session_id: str, ttl_seconds: int) -> None:
        await self._client.expire(_session_key(session_id), ttl_seconds)

    async def expire(self, session_id: str) -> None:
        await self._client.delete(_session_key(session_id))

    async def clear(self) -> None:
        """Drop every KATO session key and the index (the simulator owns this namespace)."""
        keys = [key async for key in self._client.scan_iter(match=f"{SESSION_KEY_PREFIX}*")]
        if keys:
            await self._client.delete(*keys)

    async def close(self) -> None:
        await self._client.aclose()


def _session_key(session_id: str) -> str:
    return f"{SESSION_KEY_PREFIX}{session_id}"


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


async def _faulty_response(
    kato: SimulatedKato, endpoint: str, own: Callable[[], dict[str, Any]]
) -> Response | None:
    """Apply a transport-level fault; returns the response that replaces KATO's, if any
    (`own` is KATO's own answer, which a canned answer may patch)."""
    fault = kato.fault(endpoint)
    if fault.mode == "serve" and fault.answer is not None:
        return fault.answer.response(own)
    if fault.mode == "slow":
        await asyncio.sleep(fault.delay)
    elif fault.mode == "garbage":
        return Response("<html>oops", media_type="text/html")
    elif fault.mode == "http500":
        return PlainTextResponse("Internal Server Error", status_code=500)
    return None


async def health(request: Request) -> Response:
    kato = _kato(request)
    worker = _worker(request)
    if (faulty := await _faulty_response(kato, "health", lambda: kato.health(worker))) is not None:
        return faulty
    return JSONResponse(kato.health(worker))


async def metrics(request: Request) -> Response:
    kato = _kato(request)
    worker = _worker(request)
    if faulty := await _faulty_response(kato, "metrics", lambda: kato.metrics(worker)):
        return faulty
    return JSONResponse(kato.metrics(worker))


async def status(request: Request) -> Response:
    return JSONResponse(_kato(request).status(_worker(request)))


async def session_count(request: Request) -> Response:
    return JSONResponse(_kato(request).session_count(_worker(request)))


async def create_session(request: Request) -> Response:
    parsed, errors = _parse_create_request(await request.body())
    if errors:
        return JSONResponse({"detail": errors}, status_code=422)
    kato = _kato(request)
    try:
        session = kato.create_session(**parsed)
    except ValueError:  # Redis refuses a negative expiry; KATO does not catch it
        return PlainTextResponse("Internal Server Error", status_code=500)
    await kato.after_create(session["session_id"], _worker(request))
    return JSONResponse(session)


async def get_session(request: Request) -> Response:
    kato = _kato(request)
    session_id = request.path_params["id"]
    session = kato.get_session(session_id)
    if session is None:
        return JSONResponse(
            {"detail": f"Session {session_id} not found or expired"}, status_code=404
        )
    await kato.after_get(session_id)
    return JSONResponse(session)


async def delete_session(request: Request) -> Response:
    kato = _kato(request)
    session_id = request.path_params["id"]
    if not kato.delete_session(session_id):
        return JSONResponse({"detail": f"Session {session_id} not found"}, status_code=404)
    await kato.after_delete(session_id, _worker(request))
    return JSONResponse({"status": "deleted", "session_id": session_id})


async def ws_events(websocket: WebSocket) -> None:
    """KATO's push socket: a snapshot, then its worker's session events; `ping` gets `pong`."""
    kato: SimulatedKato = websocket.app.state.kato
    try:
        index = _worker_index(websocket.headers.get(WORKER_HEADER), kato.workers)
    except ValueError:
        await websocket.close(code=_REFUSE_CLOSE_CODE)
        return
    if kato.push_mode == "refuse":
        await websocket.close(code=_REFUSE_CLOSE_CODE)  # before accept: the client sees a 403
        return
    await websocket.accept()
    outbox = kato.connect_socket(index)
    reader = asyncio.create_task(_answer_pings(websocket, outbox))
    try:
        await _send_outbox(websocket, outbox)
    finally:
        kato.disconnect_socket(outbox)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _answer_pings(websocket: WebSocket, outbox: _Outbox) -> None:
    """Read the client: `ping` queues `pong` (one writer per socket); a disconnect ends it."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            outbox.put_nowait(None)
            return
        if message.get("text") == "ping":
            outbox.put_nowait("pong")


async def _send_outbox(websocket: WebSocket, outbox: _Outbox) -> None:
    """Send queued texts as they come; None ends the socket (closing it unless the client left)."""
    while (text := await outbox.get()) is not None:
        try:
            await websocket.send_text(text)
        except WebSocketDisconnect:
            return
    if websocket.client_state is WebSocketState.CONNECTED:  # dropped by /_sim/push
        with contextlib.suppress(WebSocketDisconnect):
            await websocket.close(code=_DROP_CLOSE_CODE)


# Control endpoints (not KATO's)


async def sim_stats(request: Request) -> Response:
    kato = _kato(request)
    return JSONResponse({"requests": kato.request_counts(), **kato.push_stats()})


async def sim_fault(request: Request) -> Response:
    body = await _json_object(request)
    if body is None:
        return _bad_request("body must be a JSON object")
    delay = body.get("delay", DEFAULT_SLOW_DELAY)
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        return _bad_request("delay must be a number of seconds")
    try:
        answer = parse_answer(body["response"]) if "response" in body else None
        _kato(request).set_fault(
            str(body.get("endpoint")), str(body.get("mode")), delay=float(delay), answer=answer
        )
    except ValueError as exc:
        return _bad_request(str(exc))
    return JSONResponse({"ok": True})


async def sim_reset(request: Request) -> Response:
    kato = _kato(request)
    kato.reset()
    await kato.after_reset()
    return JSONResponse({"ok": True})


async def sim_expire(request: Request) -> Response:
    body = await _json_object(request)
    if body is None or not isinstance(body.get("session_id"), str):
        return _bad_request('body must be {"session_id": "..."}')
    session_id = body["session_id"]
    kato = _kato(request)
    if not kato.expire_session(session_id):
        return JSONResponse({"error": f"no live session {session_id}"}, status_code=404)
    await kato.after_expire(session_id)
    return JSONResponse({"ok": True})


async def sim_push(request: Request) -> Response:
    body = await _json_object(request)
    if body is None:
        return _bad_request('body must be {"mode": "on" | "refuse" | "drop"}')
    try:
        dropped = _kato(request).set_push_mode(str(body.get("mode")))
    except ValueError as exc:
        return _bad_request(str(exc))
    return JSONResponse({"ok": True, "dropped": dropped})


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

        try:
            index = _worker_index(Headers(scope=scope).get(WORKER_HEADER), self.kato.workers)
        except ValueError as exc:
            await _bad_request(str(exc))(scope, receive, send_with_headers)
            return
        worker = self.kato._take_worker(index)
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


def _worker_index(value: str | None, workers: int) -> int | None:
    """The worker a request names with X-Sim-Worker, if any; ValueError if it names none."""
    if value is None:
        return None
    try:
        index = int(value)
    except ValueError:
        index = -1
    if not 0 <= index < workers:
        raise ValueError(f"{WORKER_HEADER} must be a worker index from 0 to {workers - 1}")
    return index


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
        await kato.activity_tick()


def create_simulator_app(
    kato: SimulatedKato | None = None,
    *,
    activity: bool = False,
    activity_interval: float = 2.0,
) -> Starlette:
    """Build the simulated KATO; `activity=True` makes sessions and figures move on their own.

    With the state's `redis_url`, the app connects to that Redis when it starts (and fails to
    start if Redis does not answer).
    """
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
        _route("/_sim/push", sim_push, "POST"),
        WebSocketRoute("/ws/events", ws_events),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await kato.open_redis()
        task = asyncio.create_task(_run_activity(kato, activity_interval)) if activity else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await kato.close_redis()

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
