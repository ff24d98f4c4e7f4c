"""The app factory: builds the event log, the producer and the edge, and wires them.

`sse_monitor.app:app` is built from environment variables on first access (uvicorn and the
Procfile use it); tests and the CLI call `create_app(settings)` with settings of their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial

import structlog
from redis.asyncio import Redis
from starlette.applications import Starlette

from sse_monitor.bus.fanout import FanOut
from sse_monitor.bus.log import EventLog
from sse_monitor.bus.memory import MemoryLog
from sse_monitor.error_tracking import start_sentry
from sse_monitor.logs import configure_logging, secrets_of
from sse_monitor.monitor.producer import Producer
from sse_monitor.redact import redact_url
from sse_monitor.settings import Settings
from sse_monitor.web.edge import Edge
from sse_monitor.web.prometheus import PrometheusEndpoint

log = structlog.get_logger("sse_monitor.app")


def create_app(
    settings: Settings, *, event_log: EventLog | None = None, produce: bool = True
) -> Starlette:
    """One process, both roles by default: a producer appending to an in-memory log, and an
    edge serving it. `produce=False` builds an edge alone over a log someone else appends to.

    Raises ConfigError (a RulesError for the alert rules) before anything starts.
    """
    event_log = event_log or MemoryLog(history_size=settings.history_size)
    fanout = FanOut(client_buffer=settings.client_buffer)
    event_log.follow(fanout.deliver)
    prometheus = PrometheusEndpoint()
    redis = (
        Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
        )
        if settings.redis_url
        else None
    )
    producer = (
        Producer(settings, event_log.append, observe_tick=prometheus.poll_duration.observe)
        if produce
        else None
    )
    edge = Edge(
        settings,
        event_log,
        fanout,
        prometheus,
        alerts=producer.alerts if producer else None,
        polls=(lambda: producer.poller.tick_count) if producer else None,
        upstream_errors=producer.poller.upstream_errors if producer else None,
        redis=redis,
    )

    app = Starlette(
        routes=edge.routes,
        middleware=edge.middleware,
        lifespan=partial(_lifespan, settings, event_log.epoch, producer, edge, redis),
        exception_handlers=edge.exception_handlers,
    )
    # No slash redirects: Starlette builds their Location from the request's Host header and
    # keeps the query string, so `/events/?token=...` would send the token to any host the
    # client names. A path with a trailing slash is an unknown path (404 JSON) like any other.
    app.router.redirect_slashes = False
    return app


@contextlib.asynccontextmanager
async def _lifespan(
    settings: Settings,
    epoch: str,
    producer: Producer | None,
    edge: Edge,
    redis: Redis | None,
    app: Starlette,
) -> AsyncIterator[None]:
    """The edge opens first (a logged-out cookie stays out from the first request), then the
    producer starts; they stop the other way round."""
    log.info(
        "gateway.starting",
        kato_url=redact_url(settings.kato_url),
        poll_interval=settings.poll_interval,
        boot_id=epoch,
        access_control="on" if edge.access.enabled else "off",
        max_streams=settings.max_streams,
        role="producer and edge" if producer else "edge",
    )
    await edge.open()
    if producer is not None:
        await producer.start()
    try:
        yield
    finally:
        if producer is not None:
            await producer.aclose()
        await edge.aclose()
        if redis is not None:
            await redis.aclose()
        log.info("gateway.stopped", polls=producer.poller.tick_count if producer else None)


def set_up_process(settings: Settings) -> None:
    """Structured logs (secrets masked) and, with SENTRY_DSN, error tracking: once a process."""
    configure_logging(settings.log_level, settings.log_format, secrets_of(settings))
    if settings.sentry_dsn:
        start_sentry(
            settings.sentry_dsn,
            settings.sentry_environment,
            secrets=(settings.viewer_token or "", settings.admin_token or ""),
        )


def app_from_env() -> Starlette:
    settings = Settings.from_env()
    set_up_process(settings)
    return create_app(settings)


def __getattr__(name: str) -> Starlette:
    # Built on first access rather than at import, so that importing create_app never reads the
    # environment (a bad variable there would otherwise break every import of this module).
    if name == "app":
        globals()["app"] = built = app_from_env()
        return built
    raise AttributeError(name)
