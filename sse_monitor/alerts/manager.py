"""Runs the rules on every poll, keeps alerts in the store and announces them.

Every change is stored before it is announced, so that an id a client sees can be acknowledged,
and a firing alert is known again after a restart (and not announced twice). Two events go out:
`alert` (durable: replayed to a client that resumes) for each fired, resolved or acknowledged
alert, and `alerts` (state: the newest reaches every new client) with what fires now.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from sse_monitor.alerts.alert import Alert, stamp
from sse_monitor.alerts.lifecycle import Lifecycle, Transition
from sse_monitor.alerts.rules import Rule
from sse_monitor.alerts.store import AlertStorage, StoreUnavailable
from sse_monitor.bus.event import Event
from sse_monitor.clock import utc_now

log = structlog.get_logger("sse_monitor.alerts")

PRUNE_EVERY_SECONDS = 3600.0


class AlertManager:
    def __init__(
        self,
        rules: Iterable[Rule],
        store: AlertStorage,
        append: Callable[[Event], None],
        *,
        retention_seconds: float,
        clock: Callable[[], datetime] = utc_now,
        shared_store: bool = False,
        notify: Callable[[Transition], None] | None = None,
    ) -> None:
        """`shared_store`: other processes acknowledge alerts in the same store (a cluster);
        each evaluation then copies their acks into the firing alerts. `notify` hears of every
        transition once it is stored (notifications: it must not wait)."""
        self.lifecycle = Lifecycle(rules)
        self.store = store
        self._append = append
        self._retention = timedelta(seconds=retention_seconds)
        self._clock = clock
        self._lock = asyncio.Lock()  # one change at a time: a poll's transitions, or an ack
        self._pending_keys: frozenset[tuple[str, str | None]] = frozenset()
        self._pruned_at: float | None = None
        self._shared_store = shared_store
        self._notify = notify

    async def start(self) -> None:
        """Take back what was firing (the store is open), and append the state for new
        clients."""
        await self._prune()
        restored = await self.store.firing()
        orphans = self.lifecycle.restore(restored)
        now = self._clock()
        for alert in orphans:
            self.lifecycle.resolve_orphan(alert, now)
        if orphans:
            await self.store.save(orphans)
            for alert in orphans:
                log.info("alert.resolved", id=alert.id, rule=alert.rule, reason="rule removed")
                self._announce(Transition("resolved", alert))
        log.info(
            "alerts.started",
            rules=len(self.lifecycle.rules),
            store=self.store.path,
            firing=len(restored) - len(orphans),
        )
        self._append_state(now)

    async def evaluate(
        self, metrics: Mapping[str, Any] | None, containers: Mapping[str, Any] | None
    ) -> None:
        """Run every rule against this poll's snapshots; called once per tick."""
        async with self._lock:
            now = self._clock()
            transitions = self.lifecycle.evaluate(metrics, containers, now)
            if transitions:
                try:
                    await self.store.save(t.alert for t in transitions)
                except StoreUnavailable as exc:
                    # Announce anyway: an operator must see an alert the store could not keep.
                    # Redis away (a cluster): a warning, the next change is saved again.
                    log.warning(
                        "alerts.store_unavailable",
                        alerts=[t.alert.id for t in transitions],
                        error=str(exc),
                    )
                except Exception:
                    log.exception("alerts.store_failed", alerts=[t.alert.id for t in transitions])
                for transition in transitions:
                    self._log(transition)
                    self._announce(transition)
            acked = await self._take_acks() if self._shared_store else False
            pending = frozenset((p.rule.id, p.subject) for p in self.lifecycle.pending())
            if transitions or acked or pending != self._pending_keys:
                self._pending_keys = pending
                self._append_state(now)
        if self._pruned_at is None or time.monotonic() - self._pruned_at > PRUNE_EVERY_SECONDS:
            await self._prune()

    async def acknowledge(self, alert_id: str, by: str, note: str | None) -> Alert | None:
        """The alert after the ack (the first ack stays), or None if there is no such alert."""
        async with self._lock:
            found = await self.store.acknowledge(alert_id, by, note, self._clock())
            if found is None:
                return None
            alert, changed = found
            if not changed:
                return alert
            current = self.lifecycle.find(alert_id)
            if current is not None:
                current.acknowledged_by = alert.acknowledged_by
                current.acknowledged_at = alert.acknowledged_at
                current.ack_note = alert.ack_note
            log.info("alert.acknowledged", id=alert.id, rule=alert.rule, by=by)
            # Receivers hear of an ack while the alert fires, as a cluster's producer copies
            # them: one of a resolved alert would reach them after its resolve.
            self._announce(Transition("acknowledged", alert), notify=current is not None)
            self._append_state(self._clock())
            return alert

    async def _take_acks(self) -> bool:
        """Copy acks another node took into the firing alerts; whether any was new."""
        try:
            stored = {alert.id: alert for alert in await self.store.firing()}
        except StoreUnavailable:
            return False  # Redis away: the acks are copied at a later tick
        changed = False
        for alert in self.lifecycle.firing():
            found = stored.get(alert.id)
            if found is not None and found.acknowledged_at and not alert.acknowledged_at:
                alert.acknowledged_by = found.acknowledged_by
                alert.acknowledged_at = found.acknowledged_at
                alert.ack_note = found.ack_note
                changed = True
                if self._notify is not None:  # the node that took it announced it already
                    self._notify(Transition("acknowledged", alert))
        return changed

    def firing(self) -> list[Alert]:
        """Newest first."""
        return sorted(self.lifecycle.firing(), key=lambda a: (a.started_at, a.id), reverse=True)

    def _announce(self, transition: Transition, *, notify: bool = True) -> None:
        data = {**transition.alert.to_json(), "transition": transition.kind}
        self._append(Event("alert", data, durable=True))
        if notify and self._notify is not None:
            self._notify(transition)

    def _append_state(self, now: datetime) -> None:
        firing = self.firing()
        pending = sorted(self.lifecycle.pending(), key=lambda p: (p.since, p.rule.id))
        data = {
            "timestamp": stamp(now),
            "firing": [alert.to_json() for alert in firing],
            "firing_count": len(firing),
            "unacknowledged_count": sum(1 for alert in firing if not alert.acknowledged),
            "pending": [
                {
                    "rule": p.rule.id,
                    "subject": p.subject,
                    "severity": p.rule.severity,
                    "since": stamp(p.since),
                    "fires_at": stamp(p.since + timedelta(seconds=p.rule.for_seconds)),
                }
                for p in pending
            ],
        }
        self._append(Event("alerts", data))

    async def _prune(self) -> None:
        self._pruned_at = time.monotonic()
        try:
            removed = await self.store.prune(self._clock() - self._retention)
        except StoreUnavailable as exc:
            log.warning("alerts.prune_failed", error=str(exc))
            return
        except Exception:
            log.exception("alerts.prune_failed")
            return
        if removed:
            log.info("alerts.pruned", removed=removed, retention_days=self._retention.days)

    @staticmethod
    def _log(transition: Transition) -> None:
        alert = transition.alert
        log.info(
            f"alert.{transition.kind}",
            id=alert.id,
            rule=alert.rule,
            subject=alert.subject,
            severity=alert.severity,
            value=alert.value if transition.kind == "fired" else alert.resolved_value,
        )
