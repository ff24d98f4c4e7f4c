"""The app factory: builds the event log, the producer and the edge, and wires them.

`sse_monitor.app:app` is built from environment variables on first access (uvicorn and the
Procfile use it); tests and the CLI call `create_app(settings)` with settings of their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from functools import partial
from typing import Any, TypeVar

import structlog
from starlette.applications import Starlette

from sse_monitor.alerts.rules import load_rules
from sse_monitor.alerts.store import AlertStore
from sse_monitor.bus.fanout import FanOut
from sse_monitor.bus.journal import Journal
from sse_monitor.bus.log import EventLog
from sse_monitor.bus.memory import MemoryLog
from sse_monitor.error_tracking import start_sentry
from sse_monitor.history.buckets import tiers_of
from sse_monitor.history.recorder import HistoryRecorder
from sse_monitor.history.sqlite_store import SqliteHistory
from sse_monitor.logs import configure_logging, secrets_of
from sse_monitor.monitor.announced import read_announced
from sse_monitor.monitor.producer import Producer
from sse_monitor.notify.receivers import load_notify_config, receiver_secrets
from sse_monitor.notify.sender import DeliveryCounts
from sse_monitor.notify.sqlite_outbox import SqliteOutbox
from sse_monitor.redact import redact_url
from sse_monitor.settings import ConfigError, Settings, StoreError
from sse_monitor.web.edge import Edge
from sse_monitor.web.prometheus import ClusterCollector, NotifyCollector, PrometheusEndpoint

log = structlog.get_logger("sse_monitor.app")

Checked = TypeVar("Checked", AlertStore, Journal, SqliteHistory, SqliteOutbox)


def create_app(
    settings: Settings, *, event_log: EventLog | None = None, produce: bool = True
) -> Starlette:
    """One process, both roles by default: a producer appending to an in-memory log (kept in
    SSE_MONITOR_DB across restarts), and an edge serving it. `produce=False` builds an edge
    alone over a log someone else appends to (and opens and closes). With
    SSE_MONITOR_REDIS_URL, a node of a cluster (`create_node_app`).

    Raises ConfigError (a RulesError for the alert rules) before anything starts.
    """
    if settings.clustered and event_log is None:
        return create_node_app(settings)
    rules = load_rules(settings.alert_rules)
    notify_config = load_notify_config(settings.alert_rules, [rule.id for rule in rules])
    alert_store = _checked(AlertStore(settings.db_path))
    tiers = tiers_of(settings.chart_retention)
    history = _checked(SqliteHistory(settings.db_path, tiers)) if produce else None
    outbox = _checked(SqliteOutbox(settings.db_path)) if produce else None
    own_log = journal = None
    if event_log is None:
        if settings.db_path != ":memory:":  # which keeps nothing, so nor does the log
            journal = _checked(Journal(settings.db_path))
        event_log = own_log = MemoryLog(history_size=settings.history_size, journal=journal)
    fanout = FanOut(client_buffer=settings.client_buffer)
    event_log.follow(fanout.deliver)
    prometheus = PrometheusEndpoint()
    delivery_counts = DeliveryCounts()
    prometheus.add(NotifyCollector(delivery_counts))
    producer = (
        Producer(
            settings,
            HistoryRecorder(event_log.append, history) if history else event_log.append,
            rules=rules,
            alert_store=alert_store,
            observe_tick=prometheus.poll_duration.observe,
            notify_config=notify_config,
            outbox=outbox,
            delivery_counts=delivery_counts,
        )
        if produce
        else None
    )
    edge = Edge(
        settings,
        event_log,
        fanout,
        prometheus,
        alert_store=alert_store if producer else None,
        acknowledge=producer.alerts.acknowledge if producer else None,
        polls=(lambda: producer.poller.tick_count) if producer else None,
        upstream_errors=producer.poller.upstream_errors if producer else None,
        history=history,
        outbox=outbox,
        receivers=notify_config.receivers,
    )

    async def start() -> None:
        if producer is not None:
            await producer.start(await read_announced(event_log, settings.history_size))

    async def stop() -> None:
        if producer is not None:
            await producer.aclose()

    opened, stopped = [alert_store.open], [stop, alert_store.aclose]
    if outbox is not None:
        opened.append(outbox.open)
        stopped.append(outbox.aclose)  # after the producer: its last outcomes are recorded
    if history is not None:
        opened.append(history.open)
        stopped.append(history.aclose)  # after the producer: its last tick is written
    if own_log is not None:  # a log the caller gave is the caller's to open and close
        opened.insert(0, own_log.open)  # what the last process kept, before anyone reads
        stopped.append(own_log.aclose)  # after the last append: every id resumes
    describe = {"role": "producer and edge" if producer else "edge"}
    if journal is None:  # else the epoch is the journal's, named once it has loaded it
        describe["epoch"] = event_log.epoch
    lifespan = partial(
        _lifespan,
        settings,
        edge,
        opened=opened,
        started=[start],
        stopped=stopped,
        describe=describe,
    )
    return _starlette(edge, lifespan)


def create_node_app(settings: Settings) -> Starlette:
    """A node of a cluster: an edge over the cluster's log in Redis, and its producer while
    this node holds the lease."""
    # Imported only in cluster mode: a single process never loads redis-py's asyncio client.
    from sse_monitor.alerts.redis_store import RedisAlertStore
    from sse_monitor.cluster.acks import ClusterAcks
    from sse_monitor.cluster.connection import connect
    from sse_monitor.cluster.node import ClusterNode
    from sse_monitor.history.redis_store import RedisHistory
    from sse_monitor.notify.redis_outbox import RedisOutbox

    rules = load_rules(settings.alert_rules)
    notify_config = load_notify_config(settings.alert_rules, [rule.id for rule in rules])
    prometheus = PrometheusEndpoint()
    delivery_counts = DeliveryCounts()
    prometheus.add(NotifyCollector(delivery_counts))
    # A client of its own: the history writes the last ticks after the node's producer stopped
    # and before the node closes its clients.
    history_redis = connect(settings)
    history = RedisHistory(
        history_redis,
        settings.cluster,
        tiers_of(settings.chart_retention),
        timeout=settings.redis_timeout,
    )
    node = ClusterNode(
        settings,
        rules=rules,
        alert_store_of=partial(RedisAlertStore, prefix=settings.cluster),
        observe_tick=prometheus.poll_duration.observe,
        observe_lag=prometheus.log_lag.observe,
        history_writer=history.writer,
        notify_config=notify_config,
        outbox_of=partial(RedisOutbox, prefix=settings.cluster, timeout=settings.redis_timeout),
        delivery_counts=delivery_counts,
    )
    fanout = FanOut(client_buffer=settings.client_buffer)
    node.log.follow(fanout.deliver)
    prometheus.add(ClusterCollector(node))
    acks = ClusterAcks(node.alert_store, node.log, history_size=settings.history_size)
    edge = Edge(
        settings,
        node.log,
        fanout,
        prometheus,
        alert_store=node.alert_store,
        acknowledge=acks.acknowledge,
        polls=lambda: node.polls,
        upstream_errors=node.upstream_errors,
        node=node.describe,
        redis=node.redis,
        history=history,
        # Any node answers from the cluster's outbox; only the producer writes to it.
        outbox=RedisOutbox(
            node.redis, settings.cluster, token=None, timeout=settings.redis_timeout
        ),
        receivers=notify_config.receivers,
    )
    lifespan = partial(
        _lifespan,
        settings,
        edge,
        opened=[node.open, node.alert_store.open, history.open],
        started=[node.start],
        stopped=[node.aclose, history.aclose, history_redis.aclose],
        describe={"node": node.name, "cluster": settings.cluster, "role": "node"},
    )
    return _starlette(edge, lifespan)


def _starlette(edge: Edge, lifespan: Callable[[Starlette], AsyncContextManager[None]]) -> Starlette:
    app = Starlette(
        routes=edge.routes,
        middleware=edge.middleware,
        lifespan=lifespan,
        exception_handlers=edge.exception_handlers,
    )
    # No slash redirects: Starlette builds their Location from the request's Host header and
    # keeps the query string, so `/events/?token=...` would send the token to any host the
    # client names. A path with a trailing slash is an unknown path (404 JSON) like any other.
    app.router.redirect_slashes = False
    return app


def _checked(store: Checked) -> Checked:
    """The store, once its file was opened and closed: a bad SSE_MONITOR_DB is a configuration
    error before anything starts."""
    try:
        store.check()
    except StoreError as exc:
        raise ConfigError(f"SSE_MONITOR_DB: {exc}") from None
    return store


@contextlib.asynccontextmanager
async def _lifespan(
    settings: Settings,
    edge: Edge,
    app: Starlette,
    *,
    opened: list[Callable[[], Awaitable[None]]],
    started: list[Callable[[], Awaitable[None]]],
    stopped: list[Callable[[], Awaitable[None]]],
    describe: dict[str, Any],
) -> AsyncIterator[None]:
    """The stores open, then the edge (a logged-out cookie stays out from the first request),
    then production starts; they stop the other way round."""
    log.info(
        "gateway.starting",
        kato_url=redact_url(settings.kato_url),
        poll_interval=settings.poll_interval,
        access_control="on" if edge.access.enabled else "off",
        max_streams=settings.max_streams,
        **describe,
    )
    for step in opened:
        await step()
    await edge.open()
    for step in started:
        await step()
    try:
        yield
    finally:
        for step in stopped:
            await step()
        await edge.aclose()
        log.info("gateway.stopped")


def set_up_process(settings: Settings) -> None:
    """Structured logs (secrets masked) and, with SENTRY_DSN, error tracking: once a process."""
    configure_logging(settings.log_level, settings.log_format, secrets_of(settings))
    if settings.sentry_dsn:
        start_sentry(
            settings.sentry_dsn,
            settings.sentry_environment,
            secrets=(
                settings.viewer_token or "",
                settings.admin_token or "",
                *receiver_secrets(settings.alert_rules),
            ),
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
