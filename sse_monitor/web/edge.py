"""The edge: everything that answers HTTP, built over a way to read the event log.

It is given the log (to read: current state, replay, history), the local fan-out fed by the log's
tail, the alert desk when a producer runs in this process, and in cluster mode the process's
Redis client (logouts and the wrong-token lockout then count for every node); it never sees who
appends. Its routes, middleware and error handlers make the Starlette app; `open` and `aclose`
bracket the app's life.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route
from starlette.types import ExceptionHandler

from sse_monitor.alerts.store import AlertStorage
from sse_monitor.bus.fanout import FanOut
from sse_monitor.bus.log import LogReader
from sse_monitor.notify.outbox import Outbox
from sse_monitor.notify.receivers import Receiver
from sse_monitor.settings import Settings
from sse_monitor.sources.kato_redis import SessionList
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
from sse_monitor.web.alert_api import Acknowledge, alert_routes
from sse_monitor.web.api import JsonApi
from sse_monitor.web.cors import cors_middleware
from sse_monitor.web.errors import EXCEPTION_HANDLERS
from sse_monitor.web.history_api import HistoryReader, history_routes
from sse_monitor.web.lockout import AddressLockout, Lockout, TooManyFailures
from sse_monitor.web.lockout_redis import RedisLockout
from sse_monitor.web.notify_api import notify_routes
from sse_monitor.web.page import page_folder, page_routes
from sse_monitor.web.prometheus import GatewayCollector, PrometheusEndpoint
from sse_monitor.web.registry import StreamRegistry
from sse_monitor.web.revocations import Revocations, SQLiteRevocations
from sse_monitor.web.revocations_redis import RedisRevocations
from sse_monitor.web.stream import EventStream, close_streams_on_shutdown, keep_alive

if TYPE_CHECKING:
    from redis.asyncio import Redis


class Edge:
    """The HTTP side of one process: the stream, the JSON API, the page, access and limits."""

    def __init__(
        self,
        settings: Settings,
        event_log: LogReader,
        fanout: FanOut,
        prometheus: PrometheusEndpoint,
        *,
        alert_store: AlertStorage | None = None,
        acknowledge: Acknowledge | None = None,
        polls: Callable[[], int | None] | None = None,
        upstream_errors: Counter[str] | None = None,
        node: Callable[[], dict[str, Any]] | None = None,
        redis: Redis | None = None,
        history: HistoryReader | None = None,
        outbox: Outbox | None = None,
        receivers: Sequence[Receiver] = (),
    ) -> None:
        """`node` describes this process for /readyz (its role, the log's state); `redis` is
        the cluster's, where logouts and the lockout are kept; `outbox` is where notifications
        are recorded (read for the API and the alerts' notices)."""
        self._fanout = fanout
        self.revocations, lockout = access_stores(settings, redis)
        self.access = Access(
            settings.viewer_token,
            settings.admin_token,
            login_ttl=settings.login_ttl,
            lockout=lockout,
            revocations=self.revocations,
            trusted_proxies=settings.trusted_proxies,
        )
        self.registry = StreamRegistry(settings.max_streams, settings.max_streams_per_client)
        self._session_list = (
            SessionList(settings.kato_redis_url) if settings.kato_redis_url else None
        )
        prometheus.add(GatewayCollector(fanout, self.registry, self.access, upstream_errors))
        self._node = node or _single_process(polls)
        alerts = (
            alert_routes(alert_store, acknowledge, self.access, outbox=outbox)
            if alert_store is not None and acknowledge is not None
            else []
        )
        if outbox is not None:
            alerts += notify_routes(outbox, receivers, self.access)
        if history is not None:
            alerts += history_routes(history, self.access, interval=settings.poll_interval)
        self.routes = self._routes(settings, event_log, fanout, prometheus, polls, alerts)
        self.middleware = [Middleware(ForwardedForCheck, forwarding=self.access.forwarding)]
        if settings.cors_origins:
            self.middleware.append(cors_middleware(settings.cors_origins))
        self.exception_handlers: dict[Any, ExceptionHandler] = {
            **EXCEPTION_HANDLERS,
            Unauthorized: unauthorized,
            Forbidden: forbidden,
            TooManyFailures: locked_out,
        }
        self._ping_interval = settings.ping_interval
        self._tasks: list[asyncio.Task[None]] = []

    def _routes(
        self,
        settings: Settings,
        event_log: LogReader,
        fanout: FanOut,
        prometheus: PrometheusEndpoint,
        polls: Callable[[], int | None] | None,
        alerts: list[Route],
    ) -> list[BaseRoute]:
        stream = EventStream(event_log, fanout, self.registry, settings)
        api = JsonApi(
            event_log,
            fanout,
            self.registry,
            self.access,
            self._session_list,
            interval=settings.poll_interval,
            history_size=settings.history_size,
            containers_enabled=settings.container_stats,
            polls=polls,
            node=self._node,
        )
        return [
            *page_routes(page_folder(settings.static_dir), access_control=self.access.enabled),
            Route("/events", self.access.protect(VIEWER, stream.endpoint), methods=["GET"]),
            *api.routes(),
            *alerts,
            *self.access.routes(),
            Route("/metrics", self.access.protect(VIEWER, prometheus.endpoint), methods=["GET"]),
        ]

    async def open(self) -> None:
        await self.revocations.open()  # before the first request: a logged-out cookie stays out
        self._tasks = [
            asyncio.create_task(close_streams_on_shutdown(self._fanout), name="stream-shutdown"),
            asyncio.create_task(keep_alive(self._fanout, self._ping_interval), name="keep-alive"),
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._fanout.close_all()
        await self.revocations.aclose()
        if self._session_list is not None:
            await self._session_list.aclose()


def _single_process(polls: Callable[[], int | None] | None) -> Callable[[], dict[str, Any]]:
    """A process with its own log in memory: a producer if it polls, else an edge alone."""
    description = {
        "role": "producer" if polls is not None else "edge",
        "log": {"backend": "memory", "state": "ok"},
    }
    return lambda: description


def access_stores(settings: Settings, redis: Redis | None) -> tuple[Revocations, AddressLockout]:
    """Where logouts and wrong tokens are kept: in the cluster's Redis when there is one (this
    process's own as the fallback), else in this process and its SQLite file."""
    lockout = Lockout(settings.auth_failure_limit, settings.auth_failure_window)
    if redis is None:
        return SQLiteRevocations(settings.db_path), lockout
    timeout = settings.redis_timeout
    return (
        RedisRevocations(redis, settings.cluster, timeout=timeout),
        RedisLockout(redis, settings.cluster, lockout, timeout=timeout),
    )
