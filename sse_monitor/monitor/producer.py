"""The producer: everything that learns what to tell clients, given nothing but `append`.

Each tick appends the container snapshot, then reads KATO and appends its snapshot, then runs
the alert rules over both; KATO's push channel and the Docker engine's events append in between,
as they happen. One producer runs for the app's whole life, whether or not anyone is connected,
so that no change is missed while nobody watches, and upstream load never depends on the number
of clients.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from sse_monitor.alerts.manager import AlertManager
from sse_monitor.alerts.rules import Rule
from sse_monitor.alerts.store import AlertStorage
from sse_monitor.bus.event import Event
from sse_monitor.monitor.announced import Announced
from sse_monitor.monitor.kato import KatoMonitor
from sse_monitor.monitor.sessions import SessionMonitor
from sse_monitor.monitor.ticker import run_every
from sse_monitor.notify.notifications import Notifications
from sse_monitor.notify.outbox import Outbox
from sse_monitor.notify.receivers import NotifyConfig
from sse_monitor.notify.sender import DeliveryCounts
from sse_monitor.redact import redact_url
from sse_monitor.settings import Settings
from sse_monitor.sources.kato import KatoClient
from sse_monitor.sources.kato_push import KatoPush, push_url
from sse_monitor.tasks import cancel_and_wait

if TYPE_CHECKING:
    from sse_monitor.monitor.containers import ContainerCollector

log = structlog.get_logger("sse_monitor.monitor.producer")


class ContainerSource(Protocol):
    def snapshot(self) -> dict[str, Any] | None: ...


class AlertEvaluator(Protocol):
    async def evaluate(
        self, metrics: dict[str, Any] | None, containers: dict[str, Any] | None
    ) -> None: ...


@dataclass
class Poller:
    """The tick: containers first, then KATO, then the alert rules over both."""

    kato: KatoMonitor
    append: Callable[[Event], None]
    _: KW_ONLY
    interval: float
    containers: ContainerSource | None = None
    alerts: AlertEvaluator | None = None
    observe_tick: Callable[[float], None] | None = None
    tick_count: int = field(default=0, init=False)
    last_tick_monotonic: float | None = field(default=None, init=False)

    @property
    def upstream_errors(self) -> Counter[str]:
        """Failed upstream reads, by source."""
        return self.kato.upstream_errors

    async def run(self) -> None:
        """Tick at a fixed rate until cancelled."""
        await run_every(self.interval, self.tick, name="poller")

    async def tick(self) -> None:
        """One poll; an exception here is logged and never ends the loop."""
        self.tick_count += 1
        started = time.monotonic()
        containers = None
        try:
            containers = self.containers.snapshot() if self.containers is not None else None
            if containers is not None and not containers.get("available"):
                self.upstream_errors["docker"] += 1
            if containers is not None:
                # First, so that a slow KATO never delays it; the collector samples in the
                # background, so this never waits for the engine either.
                self.append(Event("containers", containers))
            await self.kato.poll()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("poller.tick_failed")
        finally:
            self.last_tick_monotonic = time.monotonic()
            if self.observe_tick is not None:
                self.observe_tick(self.last_tick_monotonic - started)
        if self.alerts is not None:
            # After the metrics are out: rules read this tick's snapshots, both of them.
            try:
                await self.alerts.evaluate(self.kato.snapshot, containers)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alerts.evaluate_failed")


class Producer:
    """The producer as the app runs it: built from settings, started and stopped with the app."""

    def __init__(
        self,
        settings: Settings,
        append: Callable[[Event], None],
        *,
        rules: Sequence[Rule],
        alert_store: AlertStorage,
        observe_tick: Callable[[float], None] | None = None,
        upstream_errors: Counter[str] | None = None,
        shared_alert_store: bool = False,
        notify_config: NotifyConfig | None = None,
        outbox: Outbox | None = None,
        delivery_counts: DeliveryCounts | None = None,
    ) -> None:
        """The alert store and the outbox are opened and closed by the app: they outlive a
        producer in a cluster, where a producer runs only while its node holds the lease.
        Without receivers (`notify_config`) nothing is notified."""
        self.notifications = (
            Notifications(
                notify_config,
                outbox,
                append,
                external_url=settings.external_url,
                retry_for=settings.notify_retry_for,
                retention_seconds=settings.alert_retention,
                counts=delivery_counts or DeliveryCounts(),
                firing=lambda: [alert.id for alert in self.alerts.firing()],
            )
            if notify_config is not None and notify_config.receivers and outbox is not None
            else None
        )
        self.alerts = AlertManager(
            rules,
            alert_store,
            append,
            retention_seconds=settings.alert_retention,
            shared_store=shared_alert_store,
            notify=self.notifications.submit if self.notifications else None,
        )
        self._kato_client = KatoClient(settings.kato_url, timeout=settings.upstream_timeout)
        self.containers = _container_collector(settings, append)
        self.push = KatoPush(push_url(settings.kato_url)) if settings.kato_push else None
        self.sessions = SessionMonitor(append, announce=settings.session_events)
        self.kato = KatoMonitor(
            self._kato_client,
            append,
            self.sessions,
            kato_url=redact_url(settings.kato_url),
            push_state=self.push.describe if self.push is not None else None,
            upstream_errors=upstream_errors,
        )
        self.poller = Poller(
            self.kato,
            append,
            interval=settings.poll_interval,
            containers=self.containers,
            alerts=self.alerts,
            observe_tick=observe_tick,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, announced: Announced | None = None) -> None:
        """Start from what clients were last told (read back from the log): the first poll
        announces what changed since, once."""
        if announced is not None:
            self.sessions.start_from(announced.session_count)
            self.kato.start_from(announced.kato_reachable)
        await self.alerts.start()  # before the first poll: what fired before a restart is known
        if self.notifications is not None:
            self.notifications.offer_firing(self.alerts.firing())
            self.notifications.start()
        self._tasks.append(asyncio.create_task(self.poller.run(), name="poller"))
        if self.containers is not None:
            self._tasks.append(asyncio.create_task(self.containers.run(), name="containers"))
        if self.push is not None:
            self._tasks.append(asyncio.create_task(self.push.run(self.sessions), name="kato-push"))

    async def aclose(self) -> None:
        await cancel_and_wait(self._tasks)
        if self.notifications is not None:
            await self.notifications.aclose()
        await self._kato_client.aclose()
        if self.containers is not None:
            await self.containers.aclose()


def _container_collector(
    settings: Settings, append: Callable[[Event], None]
) -> ContainerCollector | None:
    if not settings.container_stats:
        return None
    # Imported only when used: the docker SDK (with requests) is a quarter of the start-up.
    from sse_monitor.monitor.containers import ContainerCollector
    from sse_monitor.sources.docker import DockerEngine, Selection

    return ContainerCollector(
        DockerEngine(timeout=max(settings.poll_interval, 5.0)),
        Selection(names=settings.watched_names, label=settings.container_label),
        interval=settings.poll_interval,
        append=append,
    )
