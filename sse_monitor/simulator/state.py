"""`SimulatedKato`: the simulated KATO's state, and what a session change sets off, in order.

Its pieces each keep one part (sessions, workers, machine figures, faults, push outboxes, the
Redis mirror); this class builds them from one clock and one seeded random source, resets them
together, and runs a change's effects in KATO's order: Redis first, then the push.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sse_monitor.simulator.activity import DemoSessions
from sse_monitor.simulator.faults import DEFAULT_SLOW_DELAY, Faults
from sse_monitor.simulator.push import (
    Outbox,
    PushOutboxes,
    created_event,
    destroyed_event,
    snapshot_event,
)
from sse_monitor.simulator.redis_layout import RedisSessionMirror
from sse_monitor.simulator.resources import MachineResources
from sse_monitor.simulator.sessions import SessionStore
from sse_monitor.simulator.workers import Worker, WorkerPool

#: The KATO routes, as path templates; `/_sim/stats` counts requests under these keys.
ROUTE_TEMPLATES = (
    "/health",
    "/metrics",
    "/status",
    "/sessions",
    "/sessions/count",
    "/sessions/{id}",
)
SESSION_BACKENDS = ("memory", "redis")


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
        _check_options(workers, metrics_cache_seconds, session_backend, redis_url)
        self.redis_url = redis_url
        self.metrics_cache_seconds = metrics_cache_seconds
        self.clock = clock
        self.rng = random.Random(seed)
        self.workers = WorkerPool(workers, clock())
        self.sessions = SessionStore(clock, self.rng, indexed=session_backend == "redis")
        self.machine = MachineResources(self.rng)
        self.faults = Faults()
        self.push = PushOutboxes(workers, enabled=session_backend == "redis")
        self.health_issues: list[str] = []
        self._requests = dict.fromkeys(ROUTE_TEMPLATES, 0)
        self._demo_sessions = DemoSessions(self.sessions, self.rng)
        self._redis: RedisSessionMirror | None = None  # open while the app runs, with a redis_url

    # What tests set and read directly

    def create_session(self, node_id: str, ttl_seconds: int | None = None) -> dict[str, Any]:
        """Create a session (no Redis, no push) and return KATO's SessionResponse for it."""
        return self.sessions.create(node_id, ttl_seconds)

    def delete_session(self, session_id: str) -> bool:
        """Delete a live session (no Redis, no push); False if it does not exist or expired."""
        return self.sessions.delete(session_id)

    def active_count(self) -> int:
        """The count KATO reports (in redis mode, expired sessions included: KATO's quirk)."""
        return self.sessions.active_count()

    def set_fault(self, endpoint: str, mode: str, *, delay: float = DEFAULT_SLOW_DELAY) -> None:
        """Make `endpoint` ("health", "metrics" or "all") misbehave; mode "ok" clears.

        Mode "serve" needs a canned answer to serve: give it to `faults.set`.
        """
        self.faults.set(endpoint, mode, delay=delay)

    def pin_resources(self, values: Mapping[str, float | None]) -> None:
        """Hold resource figures where a test wants them; None lets a figure move again."""
        self.machine.pin(values)

    def resources(self) -> dict[str, float]:
        """Whole-machine figures as they stand (pinned ones included, no CPU warm-up)."""
        return self.machine.current()

    def set_health_issues(self, issues: Sequence[str]) -> None:
        """Issues /health reports while healthy (KATO lists warnings there), e.g. long ones."""
        self.health_issues = list(issues)

    def request_counts(self) -> dict[str, int]:
        """Requests per KATO route template, summed over workers."""
        return dict(self._requests)

    def reset(self) -> None:
        """Back to a fresh start: no sessions, faults, pins or counts (uptime keeps running).

        Open /ws/events sockets stay open; the mirror in Redis is cleared by `after_reset`.
        """
        self.sessions.clear()
        self.push.reset()
        self.faults = Faults()
        self._requests = dict.fromkeys(ROUTE_TEMPLATES, 0)
        self.machine.unpin_all()
        self.health_issues = []
        self.workers.reset()

    def activity_step(self) -> list[tuple[str, str]]:
        """Move the simulated world one tick, so that a live dashboard has something to show.

        Returns the session changes made, as ("created" or "destroyed", session_id) pairs; their
        effects (Redis, push) are `activity_tick`'s.
        """
        now = self.clock()
        changes = self._demo_sessions.move()
        self.machine.walk()
        self.workers.add_traffic(self.rng, now)  # other clients' requests
        return changes

    # Serving requests

    def take_worker(self, index: int | None = None) -> Worker:
        """The worker that serves a request: the next in turn, or the one a test named."""
        worker = self.workers.take(index)
        worker.record_requests(self.clock())
        return worker

    def count_request(self, template: str) -> None:
        self._requests[template] = self._requests.get(template, 0) + 1

    def connect_socket(self, index: int | None = None) -> Outbox:
        """Give a new /ws/events socket to a worker (the next in turn, or `index`).

        KATO's snapshot is queued before the socket joins its worker, so it always comes first.
        """
        worker = self.workers.take(index)
        snapshot = snapshot_event(self.active_count(), self.clock())
        return self.push.open(worker.index, snapshot)

    # What KATO does after a session change, in its order: Redis first, then the push

    async def open_redis(self) -> None:
        """Connect the Redis mirror (with a `redis_url`); fails fast if Redis does not answer."""
        if self.redis_url is not None and self._redis is None:
            self._redis = await RedisSessionMirror.connect(self.redis_url)

    async def close_redis(self) -> None:
        mirror, self._redis = self._redis, None
        if mirror is not None:
            await mirror.close()

    async def after_create(self, session_id: str, worker: Worker) -> None:
        """The session goes into Redis, then `session.created` to the serving worker's sockets."""
        session = self.sessions.stored(session_id)
        if session is None:
            return
        if self._redis is not None:
            await self._redis.save(session)
        self.push.push(worker.index, created_event(session, self.clock()))

    async def after_delete(self, session_id: str, worker: Worker) -> None:
        """DEL and SREM in Redis, then `session.destroyed` to the serving worker's sockets."""
        if self._redis is not None:
            await self._redis.remove(session_id)
        self.push.push(worker.index, destroyed_event(session_id, self.clock()))

    async def after_get(self, session_id: str) -> None:
        """A GET slid the session's TTL: KATO slides the key's TTL too (EXPIRE, data unchanged)."""
        session = self.sessions.stored(session_id)
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
            worker = self.workers.take()
            if change == "created":
                await self.after_create(session_id, worker)
            else:
                await self.after_delete(session_id, worker)


def _check_options(
    workers: int, metrics_cache_seconds: float, session_backend: str, redis_url: str | None
) -> None:
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if metrics_cache_seconds < 0:
        raise ValueError("metrics_cache_seconds must not be negative")
    if session_backend not in SESSION_BACKENDS:
        raise ValueError(f"session_backend must be memory or redis; got {session_backend!r}")
    if redis_url is not None and session_backend != "redis":
        raise ValueError('redis_url needs session_backend="redis"')
