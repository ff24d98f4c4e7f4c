"""GET /metrics in the Prometheus text format, read from the running totals at scrape time.

The hot paths (publishing, writing frames) only add to plain integers (`FanOutStats`); this
collector turns them into metric families when Prometheus asks. The registry is the app's own,
not prometheus-client's global one, so two apps in one process (as in tests) never mix.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from sse_monitor.bus.event import TOPICS
from sse_monitor.bus.fanout import FanOut
from sse_monitor.notify.sender import DeliveryCounts
from sse_monitor.web.access import Access
from sse_monitor.web.registry import StreamRegistry

if TYPE_CHECKING:
    from sse_monitor.cluster.node import ClusterNode

POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
CLOSE_REASONS = ("lagging", "stuck", "client", "shutdown")
REFUSAL_REASONS = (
    "max_streams",
    "max_streams_per_client",
    "unauthorized",
    "forbidden",
    "locked_out",
)


class GatewayCollector(Collector):
    """The edge's running totals, and the producer's failed upstream reads when it runs here."""

    def __init__(
        self,
        fanout: FanOut,
        registry: StreamRegistry,
        access: Access,
        upstream_errors: Counter[str] | None,
    ) -> None:
        self._fanout = fanout
        self._streams = registry
        self._access = access
        self._upstream_errors = upstream_errors

    def collect(self) -> Iterator[Metric]:
        yield from self._streams_open()
        yield from self._frames()
        yield from self._refusals_and_errors()
        yield from _asyncio_tasks()

    def _streams_open(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "sse_monitor_streams_open", "Open /events streams.", value=len(self._streams.streams)
        )
        by_topic = GaugeMetricFamily(
            "sse_monitor_streams_open_by_topic",
            "Open streams subscribed to each topic.",
            labels=["topic"],
        )
        counts = self._fanout.subscribers_by_topic()
        for topic in TOPICS:
            by_topic.add_metric([topic], counts.get(topic, 0))
        yield by_topic

    def _frames(self) -> Iterator[Metric]:
        stats = self._fanout.stats
        published = CounterMetricFamily(
            "sse_monitor_events_published", "Events published, by event name.", labels=["event"]
        )
        for name, count in sorted(stats.published.items()):
            published.add_metric([name], count)
        yield published
        yield CounterMetricFamily(
            "sse_monitor_frames_sent", "Frames handed to client sockets.", value=stats.frames_sent
        )
        yield CounterMetricFamily(
            "sse_monitor_frames_written_through",
            "Of the frames sent, those written to an idle stream's socket by the fan-out itself.",
            value=stats.frames_written_through,
        )
        yield CounterMetricFamily(
            "sse_monitor_write_through_refused",
            "Frames the fan-out could not write at once (the socket was full): queued instead.",
            value=stats.write_through_refused,
        )
        yield CounterMetricFamily(
            "sse_monitor_frames_coalesced",
            "Pending state frames replaced by a newer one for a slow client.",
            value=stats.frames_coalesced,
        )
        yield CounterMetricFamily(
            "sse_monitor_frames_dropped",
            "Frames discarded with the backlog of a stream closed for lagging.",
            value=stats.frames_dropped,
        )
        closed = CounterMetricFamily(
            "sse_monitor_streams_closed", "Streams ended, by reason.", labels=["reason"]
        )
        for reason in CLOSE_REASONS:
            closed.add_metric([reason], stats.closed.get(reason, 0))
        yield closed

    def _refusals_and_errors(self) -> Iterator[Metric]:
        if self._upstream_errors is not None:
            errors = CounterMetricFamily(
                "sse_monitor_upstream_errors",
                "Failed upstream reads, by source.",
                labels=["source"],
            )
            for source in ("kato_health", "kato_metrics", "docker"):
                errors.add_metric([source], self._upstream_errors.get(source, 0))
            yield errors
        refused = CounterMetricFamily(
            "sse_monitor_connections_refused", "Requests refused, by reason.", labels=["reason"]
        )
        for reason in REFUSAL_REASONS:
            count = self._streams.refused.get(reason, 0) + self._access.refused.get(reason, 0)
            refused.add_metric([reason], count)
        yield refused


class ClusterCollector(Collector):
    """A cluster node's role, its lease changes and its log's state."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        leadership, event_log = self._node.leadership, self._node.log
        role = GaugeMetricFamily(
            "sse_monitor_role", "1 for this node's role (producer or edge).", labels=["role"]
        )
        for name in ("producer", "edge"):
            role.add_metric([name], 1 if leadership.role == name else 0)
        yield role
        yield CounterMetricFamily(
            "sse_monitor_leader_changes",
            "Terms of leadership this node began or ended.",
            value=leadership.changes,
        )
        yield GaugeMetricFamily(
            "sse_monitor_log_available",
            "1 while this node reads and writes the log in Redis.",
            value=1 if event_log.available else 0,
        )
        yield GaugeMetricFamily(
            "sse_monitor_log_waiting_appends",
            "Events queued for Redis (it is slow or unreachable).",
            value=event_log.outbox_size,
        )
        yield CounterMetricFamily(
            "sse_monitor_log_appends_refused",
            "Events not appended: refused by the lease's fence, or the queue was full.",
            value=event_log.appends_refused,
        )
        yield CounterMetricFamily(
            "sse_monitor_log_resets",
            "Times this node reloaded the log and sent its clients a reset.",
            value=event_log.resets,
        )


def _asyncio_tasks() -> Iterator[Metric]:
    """Tasks alive on the event loop: a leak of per-stream tasks shows here before in memory.

    Only while a loop runs in this thread (a scrape does); a collect from elsewhere skips it.
    """
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        return
    yield GaugeMetricFamily(
        "sse_monitor_asyncio_tasks", "Tasks alive on the event loop, at scrape time.", value=tasks
    )


class PrometheusEndpoint:
    """The registry, the poll-duration histogram the poller feeds, and the endpoint.

    The registry also holds prometheus-client's process collector (`process_resident_memory_bytes`,
    `process_open_fds`, CPU seconds, ...): the app's registry is not the global one that carries
    it by default.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.poll_duration = Histogram(
            "sse_monitor_poll_duration_seconds",
            "How long one poll of the upstreams took.",
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )

        self.log_lag = Histogram(
            "sse_monitor_log_lag_seconds",
            "Cluster mode: from an event's append in Redis to this node's fan-out (Redis's clock "
            "against this node's).",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class NotifyCollector(Collector):
    """Notification attempts' outcomes since this process started (every term's, in a cluster)."""

    def __init__(self, counts: DeliveryCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "sse_monitor_notifications_sent",
            "Notifications a receiver took (2xx).",
            value=self._counts.sent,
        )
        yield CounterMetricFamily(
            "sse_monitor_notifications_retried",
            "Notification attempts that failed and are tried again (408, 429, 5xx, no answer).",
            value=self._counts.retried,
        )
        yield CounterMetricFamily(
            "sse_monitor_notifications_failed",
            "Notifications given up: refused by the receiver (4xx) or retried for too long.",
            value=self._counts.failed,
        )
