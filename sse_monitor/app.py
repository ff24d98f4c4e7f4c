"""The app factory: builds every piece, hands each what it needs, and runs the poller.

`sse_monitor.app:app` is built from environment variables on first access (uvicorn and the
Procfile use it); tests and the CLI call `create_app(settings)` with settings of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sse_monitor.alerts.manager import AlertManager
from sse_monitor.alerts.rules import load_rules
from sse_monitor.alerts.store import AlertStore, StoreError
from sse_monitor.bus.fanout import Broadcaster
from sse_monitor.error_tracking import start_sentry
from sse_monitor.logs import configure_logging, secrets_of
from sse_monitor.monitor.poller import Poller
from sse_monitor.redact import redact_url
from sse_monitor.settings import ConfigError, Settings
from sse_monitor.sources.kato import KatoClient
from sse_monitor.sources.kato_push import KatoPush, push_url
from sse_monitor.sources.kato_redis import KatoSessions
from sse_monitor.web.access import (
    VIEWER,
    Access,
    Forbidden,
    Unauthorized,
    forbidden,
    locked_out,
    unauthorized,
)
from sse_monitor.web.addresses import ForwardedForCheck
from sse_monitor.web.alert_api import alert_routes
from sse_monitor.web.api import api_routes
from sse_monitor.web.cors import cors_middleware
from sse_monitor.web.errors import EXCEPTION_HANDLERS, json_error
from sse_monitor.web.lockout import Lockout, TooManyFailures
from sse_monitor.web.prometheus import GatewayCollector, PrometheusEndpoint
from sse_monitor.web.registry import StreamRegistry
from sse_monitor.web.revocations import SQLiteRevocations
from sse_monitor.web.stream import EventStream, close_streams_on_shutdown

log = structlog.get_logger("sse_monitor.app")

# The dashboard page: plain files, no build step. In a checkout (and an editable install) they
# are in static/ beside the package; an installed wheel carries them inside it.
PAGE_FOLDERS = (
    Path(__file__).resolve().parent.parent / "static",
    Path(__file__).resolve().parent / "static",
)


def create_app(settings: Settings) -> Starlette:
    """Raises ConfigError (a RulesError for the alert rules) before anything starts."""
    broadcaster = Broadcaster(
        history_size=settings.history_size, client_buffer=settings.client_buffer
    )
    store = AlertStore(settings.db_path)
    try:
        store.check()
    except StoreError as exc:
        raise ConfigError(f"SSE_MONITOR_DB: {exc}") from None
    alerts = AlertManager(
        load_rules(settings.alert_rules),
        store,
        broadcaster.publish,
        retention_seconds=settings.alert_retention,
    )
    kato = KatoClient(settings.kato_url, timeout=settings.upstream_timeout)
    collector = None
    if settings.container_stats:
        # Imported only when used: the docker SDK (with requests) is a quarter of the start-up.
        from sse_monitor.monitor.containers import ContainerCollector
        from sse_monitor.sources.docker import DockerEngine, Selection

        collector = ContainerCollector(
            DockerEngine(timeout=max(settings.poll_interval, 5.0)),
            Selection(names=settings.watched_names, label=settings.container_label),
            interval=settings.poll_interval,
            publish=broadcaster.publish,
        )
    prometheus = PrometheusEndpoint()
    push = KatoPush(push_url(settings.kato_url)) if settings.kato_push else None
    kato_sessions = KatoSessions(settings.kato_redis_url) if settings.kato_redis_url else None
    poller = Poller(
        kato,
        broadcaster,
        interval=settings.poll_interval,
        session_events=settings.session_events,
        containers=collector,
        alerts=alerts,
        kato_url=redact_url(settings.kato_url),
        observe_tick=prometheus.poll_duration.observe,
        push=push,
    )
    revocations = SQLiteRevocations(settings.db_path)
    access = Access(
        settings.viewer_token,
        settings.admin_token,
        login_ttl=settings.login_ttl,
        lockout=Lockout(settings.auth_failure_limit, settings.auth_failure_window),
        revocations=revocations,
        trusted_proxies=settings.trusted_proxies,
    )
    registry = StreamRegistry(settings.max_streams, settings.max_streams_per_client)
    prometheus.add(GatewayCollector(broadcaster, registry, poller, access))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info(
            "gateway.starting",
            kato_url=redact_url(settings.kato_url),
            poll_interval=settings.poll_interval,
            boot_id=broadcaster.boot_id,
            access_control="on" if access.enabled else "off",
            max_streams=settings.max_streams,
        )
        await alerts.start()  # before the first poll: what fired before a restart is known
        await revocations.open()  # before the first request: a logged-out cookie stays out
        tasks = [
            asyncio.create_task(poller.run(), name="poller"),
            asyncio.create_task(close_streams_on_shutdown(broadcaster), name="stream-shutdown"),
        ]
        if collector is not None:
            tasks.append(asyncio.create_task(collector.run(), name="containers"))
        if push is not None:
            tasks.append(asyncio.create_task(push.run(poller), name="kato-push"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            broadcaster.close_all()
            await alerts.aclose()
            await revocations.aclose()
            await kato.aclose()
            if kato_sessions is not None:
                await kato_sessions.aclose()
            if collector is not None:
                await collector.aclose()
            log.info("gateway.stopped", polls=poller.tick_count)

    static_dir = (
        Path(settings.static_dir)
        if settings.static_dir
        else next((f for f in PAGE_FOLDERS if (f / "index.html").is_file()), PAGE_FOLDERS[0])
    )
    has_page = (static_dir / "index.html").is_file()
    if not has_page:
        # The stream and the API work without the page: say where it was looked for.
        log.warning(
            "page.missing",
            static_dir=str(static_dir),
            hint="set SSE_MONITOR_STATIC_DIR to the folder holding index.html",
        )

    async def page(request: Request) -> Response:
        if not has_page:
            return json_error(404, f"the page is not installed ({static_dir} has no index.html)")
        return FileResponse(static_dir / "index.html", headers={"Cache-Control": "no-cache"})

    async def index(request: Request) -> Response:
        return JSONResponse(
            {
                "service": "sse-monitor",
                "page": "/",
                "stream": "events",
                "endpoints": [
                    "events",
                    "api/snapshot",
                    "api/sessions/count",
                    "api/sessions",
                    "api/events",
                    "api/containers",
                    "api/alerts",
                    "api/streams",
                    "api/access",
                    "login",
                    "logout",
                    "metrics",
                    "healthz",
                    "readyz",
                ],
                "access_control": access.enabled,
            }
        )

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/api", index, methods=["GET"]),
        Route(
            "/events",
            access.protect(VIEWER, EventStream(broadcaster, registry, settings).endpoint),
            methods=["GET"],
        ),
        *api_routes(poller, broadcaster, collector, registry, access, kato_sessions),
        *alert_routes(alerts, access),
        *access.routes(),
        Route("/metrics", access.protect(VIEWER, prometheus.endpoint), methods=["GET"]),
    ]
    if has_page:
        routes.append(Mount("/static", StaticFiles(directory=static_dir), name="static"))
    middleware = [Middleware(ForwardedForCheck, forwarding=access.forwarding)]
    if settings.cors_origins:
        middleware.append(cors_middleware(settings.cors_origins))
    handlers = {
        **EXCEPTION_HANDLERS,
        Unauthorized: unauthorized,
        Forbidden: forbidden,
        TooManyFailures: locked_out,
    }
    app = Starlette(
        routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=handlers
    )
    # No slash redirects: Starlette builds their Location from the request's Host header and
    # keeps the query string, so `/events/?token=...` would send the token to any host the
    # client names. A path with a trailing slash is an unknown path (404 JSON) like any other.
    app.router.redirect_slashes = False
    return app


def app_from_env() -> Starlette:
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format, secrets_of(settings))
    if settings.sentry_dsn:
        start_sentry(
            settings.sentry_dsn,
            settings.sentry_environment,
            secrets=(settings.viewer_token or "", settings.admin_token or ""),
        )
    return create_app(settings)


def __getattr__(name: str) -> Starlette:
    # Built on first access rather than at import, so that importing create_app never reads the
    # environment (a bad variable there would otherwise break every import of this module).
    if name == "app":
        globals()["app"] = built = app_from_env()
        return built
    raise AttributeError(name)
