"""KATO's worker processes: each its own request counters, uptime and caches, taken in turn."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from typing import Any

#: Names the worker that serves a request (HTTP or WebSocket handshake), instead of round robin.
WORKER_HEADER = "X-Sim-Worker"
_RATE_WINDOW_SECONDS = 60.0
_WORKER_BOOT_GAP = 0.05  # workers boot one after another, so their uptimes differ a little


class CachedBody:
    """One worker's cached answer to one endpoint (KATO caches `/metrics` and the count)."""

    def __init__(self) -> None:
        self._entry: tuple[float, dict[str, Any]] | None = None  # (expires_at, body)

    def get(self, now: float) -> dict[str, Any] | None:
        if self._entry is not None and now < self._entry[0]:
            return self._entry[1]
        return None

    def put(self, now: float, seconds: float, body: dict[str, Any]) -> None:
        """Keep `body` for `seconds`; 0 caches nothing."""
        if seconds > 0:
            self._entry = (now + seconds, body)


class Worker:
    """One KATO worker process: its own request counters, uptime and caches."""

    def __init__(self, index: int, booted_at: float) -> None:
        self.index = index
        self.booted_at = booted_at
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.timed_requests = 0
        self.response_time_total = 0.0
        self.recent: deque[tuple[float, int]] = deque()  # (when, how many) for the rates
        self.metrics_cache = CachedBody()
        self.count_cache = CachedBody()

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


class WorkerPool:
    """The workers behind KATO's port: each request goes to the next in turn, or a named one."""

    def __init__(self, count: int, now: float) -> None:
        self._workers = [
            Worker(index, booted_at=now - _WORKER_BOOT_GAP * (count - 1 - index))
            for index in range(count)
        ]
        self._next = 0

    def __len__(self) -> int:
        return len(self._workers)

    def __iter__(self) -> Iterator[Worker]:
        return iter(self._workers)

    def take(self, index: int | None = None) -> Worker:
        """The next worker in turn, or the one at `index` (which leaves the turn as it is)."""
        if index is not None:
            return self._workers[index]
        worker = self._workers[self._next]
        self._next = (self._next + 1) % len(self._workers)
        return worker

    def add_traffic(self, rng: random.Random, now: float) -> None:
        """Other clients' requests, for the demo's request figures."""
        for worker in self._workers:
            count = rng.randint(0, 25)
            worker.record_requests(now, count)
            worker.record_response_time(rng.uniform(0.0008, 0.004), count)

    def reset(self) -> None:
        self._next = 0
        for worker in self._workers:
            worker.reset()


def named_worker(value: str | None, workers: int) -> int | None:
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
