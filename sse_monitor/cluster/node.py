"""One gateway process of a cluster: an edge over the Redis log, and a producer while it leads.

The app factory builds this when SSE_MONITOR_REDIS_URL is set. It owns the Redis clients, the
log, the lease and the leadership loop; each term of leadership builds a fresh producer that
starts from what the log says clients were last told.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from sse_monitor.alerts.rules import Rule
from sse_monitor.alerts.store import AlertStorage
from sse_monitor.bus.redis_log import RedisLog
from sse_monitor.clock import iso
from sse_monitor.cluster.connection import connect
from sse_monitor.cluster.leadership import Leadership
from sse_monitor.cluster.lease import Lease
from sse_monitor.history.recorder import HistoryRecorder, HistoryWriter
from sse_monitor.monitor.announced import read_announced
from sse_monitor.monitor.producer import Producer
from sse_monitor.notify.outbox import Outbox
from sse_monitor.notify.receivers import NotifyConfig
from sse_monitor.notify.sender import DeliveryCounts
from sse_monitor.settings import Settings
from sse_monitor.tasks import cancel_and_wait

log = structlog.get_logger("sse_monitor.cluster.node")


def node_name() -> str:
    """Unique per process: a restarted process is a new node."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class ClusterNode:
    def __init__(
        self,
        settings: Settings,
        *,
        rules: Sequence[Rule],
        alert_store_of: Callable[[Any], AlertStorage],
        observe_tick: Callable[[float], None] | None = None,
        observe_lag: Callable[[float], None] | None = None,
        history_writer: Callable[[str], HistoryWriter] | None = None,
        notify_config: NotifyConfig | None = None,
        outbox_of: Callable[..., Outbox] | None = None,
        delivery_counts: DeliveryCounts | None = None,
    ) -> None:
        """`alert_store_of(redis)` builds the cluster's alert store on this node's client;
        `history_writer(token)`, if given, records each term's ticks, fenced by its token;
        `outbox_of(redis, token=token)` the outbox each term notifies through, fenced too."""
        self.name = node_name()
        self._settings = settings
        self.redis = connect(settings)
        self._tail_redis = connect(settings, blocking_for=1.0)
        self.log = RedisLog(
            self.redis,
            self._tail_redis,
            prefix=settings.cluster,
            history_size=settings.history_size,
            node=self.name,
            observe_lag=observe_lag,
        )
        self.alert_store = alert_store_of(self.redis)
        self._rules = rules
        self._observe_tick = observe_tick
        self._history_writer = history_writer
        self._notify_config = notify_config
        self._outbox_of = outbox_of
        self._delivery_counts = delivery_counts
        self.upstream_errors: Counter[str] = Counter()
        self.producer: Producer | None = None
        self.leadership = Leadership(
            Lease(self.redis, prefix=settings.cluster, node=self.name, ttl=settings.leader_ttl),
            ttl=settings.leader_ttl,
            begin=self._begin,
            node=self.name,
        )
        self.log.on_fenced = self.leadership.fenced
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.log.open(wait=self._settings.redis_timeout)
        if not self.log.available:
            log.warning("cluster.redis_unavailable_at_start", cluster=self._settings.cluster)

    async def start(self) -> None:
        """Take part in the election (after the edge opened)."""
        self._task = asyncio.create_task(self.leadership.run(), name="leadership")

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        await self.leadership.aclose()
        await self.log.aclose()
        await self.redis.aclose()
        await self._tail_redis.aclose()

    @property
    def polls(self) -> int | None:
        return self.producer.poller.tick_count if self.producer is not None else None

    def describe(self) -> dict[str, Any]:
        """The node's part of /readyz."""
        return {
            "role": self.leadership.role,
            "node": self.name,
            "cluster": self._settings.cluster,
            "leader": self.leadership.holder,
            "producing_since": (
                iso(datetime.fromtimestamp(self.leadership.elected_at, UTC))
                if self.leadership.elected_at is not None
                else None
            ),
            "log": {
                "backend": "redis",
                "state": "ok" if self.log.available else "unavailable",
                "epoch": self.log.epoch or None,
                "waiting_appends": self.log.outbox_size,
            },
        }

    async def _begin(self, token: str) -> Producer:
        """A term: read the log to its end, then produce from what clients were last told."""
        if not await self.log.caught_up(within=self._settings.leader_ttl / 2):
            raise TimeoutError("this node's copy of the log is behind: not producing yet")
        announced = await read_announced(self.log, self._settings.history_size)
        append = self.log.appender(token)
        if self._history_writer is not None:
            append = HistoryRecorder(append, self._history_writer(token))
        producer = Producer(
            self._settings,
            append,
            rules=self._rules,
            alert_store=self.alert_store,
            observe_tick=self._observe_tick,
            upstream_errors=self.upstream_errors,
            shared_alert_store=True,
            notify_config=self._notify_config,
            outbox=self._outbox_of(self.redis, token=token) if self._outbox_of else None,
            delivery_counts=self._delivery_counts,
        )
        await producer.start(announced)
        self.producer = producer
        return _Term(self, producer)


class _Term:
    """Ends a producer's term: stop it, forget it, drop what it queued and could not send."""

    def __init__(self, node: ClusterNode, producer: Producer) -> None:
        self._node = node
        self._producer = producer

    async def aclose(self) -> None:
        if self._node.producer is self._producer:
            self._node.producer = None
        await self._producer.aclose()
