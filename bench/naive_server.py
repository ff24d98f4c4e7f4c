"""The reference for bench/fanout.py: a naive sse-starlette server, as one is usually written.

One asyncio.Queue per client; a background task polls the simulated KATO every interval, builds
the same `metrics` payload as the gateway (same fields, same size, `timestamp` = publish time) and
puts the dict into every queue. Each client's generator JSON-encodes the dict itself and
sse-starlette turns it into frame bytes, so the encoding work grows with the number of clients:
that is the cost the gateway's encode-once broadcaster is meant to avoid. bench/nchan_publisher.py
builds its payload with the same `Hub`.

    python bench/naive_server.py --port 8090 --interval 1 --kato-url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# The figures the gateway forwards from KATO's /metrics, so that both payloads are alike.
METRIC_FIELDS: dict[str, tuple[str, ...]] = {
    "resources": ("cpu_percent", "memory_percent", "disk_percent"),
    "performance": ("total_requests", "total_errors", "error_rate", "average_response_time"),
    "rates": ("requests_per_second", "requests_per_minute", "errors_per_minute"),
}
PING_SECONDS = 15.0  # the gateway's default SSE_MONITOR_PING_INTERVAL
GRACEFUL_SHUTDOWN_SECONDS = 1.5  # as the gateway's CLI


def _iso_now() -> str:
    return datetime.now(UTC).isoformat()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


async def fixed_rate(interval: float) -> AsyncIterator[None]:
    """Fixed-rate ticks (start to start), skipping missed ones, like the gateway's poller."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        yield
        next_at += interval
        now = loop.time()
        if now > next_at:
            next_at += (int((now - next_at) // interval) + 1) * interval
        await asyncio.sleep(next_at - now)


class Hub:
    """Polls KATO and hands every client's queue the same dict; nothing is encoded here."""

    def __init__(self, kato_url: str, interval: float) -> None:
        self.interval = interval
        self.boot = secrets.token_hex(4)
        self.seq = 0
        self.queues: set[asyncio.Queue[tuple[int, dict[str, Any]]]] = set()
        self.last_success: str | None = None
        # The gateway's `sessions.push` (its KATO push channel's state), kept so the payload has
        # the gateway's shape and size; this server has no push channel, hence "off".
        self.push = {"state": "off", "since": _iso_now(), "error": None, "messages": 0}
        self._http = httpx.AsyncClient(base_url=kato_url, timeout=min(interval * 0.8, 10.0))

    async def run(self) -> None:
        async for _ in fixed_rate(self.interval):
            payload = await self.poll()
            self.seq += 1
            for queue in self.queues:
                queue.put_nowait((self.seq, payload))

    async def poll(self) -> dict[str, Any]:
        """One poll of KATO's /health and /metrics, as the gateway's `metrics` event data."""
        started = time.perf_counter()
        health, metrics = await asyncio.gather(
            self._get("/health"), self._get("/metrics"), return_exceptions=True
        )
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        errors = [
            f"{path}: {type(result).__name__}"
            for path, result in (("/health", health), ("/metrics", metrics))
            if isinstance(result, BaseException)
        ]
        h = health if isinstance(health, dict) else {}
        m = metrics if isinstance(metrics, dict) else {}
        sections = {
            section: {f: _number((m.get(section) or {}).get(f)) for f in fields} if m else None
            for section, fields in METRIC_FIELDS.items()
        }
        now = _iso_now()  # the publish time: queues are fed right after this
        if h:
            self.last_success = now
        return {
            "timestamp": now,
            "kato": {
                "status": h.get("status", "unreachable"),
                "issues": list(h.get("issues") or []),
                **sections,
                "uptime_seconds": _number(h.get("uptime_seconds")),
                "latency_ms": latency_ms if h else None,
            },
            "sessions": {"active_count": h.get("active_sessions"), "push": self.push},
            "stale": bool(errors),
            "error": "; ".join(errors) or None,
            "last_success": self.last_success,
        }

    async def _get(self, path: str) -> dict[str, Any]:
        response = await self._http.get(path)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def aclose(self) -> None:
        await self._http.aclose()


def create_app(kato_url: str, interval: float) -> Starlette:
    hub = Hub(kato_url, interval)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.run(), name="naive-poller")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await hub.aclose()

    async def stream() -> AsyncIterator[dict[str, str]]:
        queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        hub.queues.add(queue)
        try:
            while True:
                seq, payload = await queue.get()
                data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
                yield {"event": "metrics", "id": f"{hub.boot}-{seq}", "data": data}
        finally:
            hub.queues.discard(queue)

    async def events(request: Request) -> Response:
        return EventSourceResponse(stream(), ping=PING_SECONDS)

    async def readyz(request: Request) -> Response:
        ready = hub.seq > 0
        body = {"ready": ready, "polls": hub.seq, "streams": len(hub.queues)}
        return JSONResponse(body, status_code=200 if ready else 503)

    routes = [
        Route("/events", events, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between events")
    parser.add_argument("--kato-url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    # uvicorn's defaults (loop="auto": uvloop when installed; http="auto": httptools), as the
    # gateway's CLI; no access log, as the gateway at SSE_MONITOR_LOG_LEVEL=warning.
    uvicorn.run(
        create_app(args.kato_url, args.interval),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


if __name__ == "__main__":
    main()
