"""`create_simulator_app`: the simulated KATO as a Starlette app, with its lifespan and activity."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.routing import BaseRoute, Route, WebSocketRoute

from sse_monitor.simulator import control, endpoints
from sse_monitor.simulator.middleware import KatoMiddleware
from sse_monitor.simulator.state import SimulatedKato


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
    routes = _routes()

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
            Middleware(KatoMiddleware, kato=kato, routes=routes),
            Middleware(
                CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"]
            ),
        ],
        exception_handlers={HTTPException: endpoints.http_exception},
        lifespan=lifespan,
    )
    app.state.kato = kato
    return app


async def _run_activity(kato: SimulatedKato, interval: float) -> None:
    """The demo's activity: a tick every `interval` seconds on average, at random."""
    while True:
        await asyncio.sleep(interval * kato.rng.uniform(0.5, 1.5))
        await kato.activity_tick()


def _routes() -> list[BaseRoute]:
    """KATO's routes, then the simulator's own under `/_sim/`."""
    return [
        _route("/health", endpoints.health, "GET"),
        _route("/metrics", endpoints.metrics, "GET"),
        _route("/status", endpoints.status, "GET"),
        _route("/sessions", endpoints.create_session, "POST"),
        _route("/sessions/count", endpoints.session_count, "GET"),
        _route("/sessions/{id}", endpoints.get_session, "GET"),
        _route("/sessions/{id}", endpoints.delete_session, "DELETE"),
        _route("/_sim/stats", control.sim_stats, "GET"),
        _route("/_sim/fault", control.sim_fault, "POST"),
        _route("/_sim/reset", control.sim_reset, "POST"),
        _route("/_sim/expire", control.sim_expire, "POST"),
        _route("/_sim/resources", control.sim_resources, "POST"),
        _route("/_sim/push", control.sim_push, "POST"),
        WebSocketRoute("/ws/events", endpoints.ws_events),
    ]


def _route(path: str, endpoint: Callable[[Request], Any], method: str) -> Route:
    """A route for `method` alone: FastAPI does not add HEAD to GET routes (HEAD gets a 405)."""
    one_method = Route(path, endpoint, methods=[method])
    one_method.methods = {method}
    return one_method
