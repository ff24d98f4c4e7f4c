"""Each rule's alerts through pending -> firing -> resolved, one poll at a time.

Pure and synchronous: given the snapshots and the time, it says which alerts fired and which
resolved; storing and announcing them is the manager's job. One alert exists per rule and subject
(KATO, or one container) while it fires; the next episode is a new alert with a new id.

- pending: the condition holds, for less than the rule's `for`. A poll where it does not hold,
  or where the value is unknown, ends it without a trace (as Prometheus does).
- firing: announced once. It stays firing while the value is unknown (a failed read proves
  nothing) and until the value has been past the clear threshold for `clear_for`.
- resolved: announced once. A per-container alert also resolves when its container is gone from
  an engine that is available (removed, or no longer watched).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sse_monitor.alerts.alert import Alert, new_alert_id, stamp
from sse_monitor.alerts.metric_paths import is_per_container, read_metric
from sse_monitor.alerts.rules import CHANGE, Rule

Key = tuple[str, str | None]  # (rule id, subject)


@dataclass(frozen=True, slots=True)
class Transition:
    kind: str  # "fired" or "resolved"
    alert: Alert


@dataclass(slots=True)
class _Track:
    """What is known about one rule and subject between polls."""

    pending_since: datetime | None = None
    pending_value: Any = None
    clearing_since: datetime | None = None
    alert: Alert | None = None
    last_number: float | None = None  # for `increased`


@dataclass(frozen=True, slots=True)
class Pending:
    rule: Rule
    subject: str | None
    since: datetime
    value: Any


class Lifecycle:
    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = {rule.id: rule for rule in rules}
        self._tracks: dict[Key, _Track] = {}

    def restore(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Take back the alerts that were firing before a restart, so that one still true is
        not announced again. Returns those whose rule no longer exists: the caller resolves them."""
        orphans = []
        for alert in alerts:
            if alert.rule in self.rules:
                self._tracks[(alert.rule, alert.subject)] = _Track(alert=alert)
            else:
                orphans.append(alert)
        return orphans

    def firing(self) -> list[Alert]:
        return [track.alert for track in self._tracks.values() if track.alert is not None]

    def pending(self) -> list[Pending]:
        return [
            Pending(self.rules[rule_id], subject, track.pending_since, track.pending_value)
            for (rule_id, subject), track in self._tracks.items()
            if track.pending_since is not None
        ]

    def find(self, alert_id: str) -> Alert | None:
        return next((alert for alert in self.firing() if alert.id == alert_id), None)

    def evaluate(
        self, metrics: Mapping[str, Any] | None, containers: Mapping[str, Any] | None, now: datetime
    ) -> list[Transition]:
        transitions: list[Transition] = []
        for rule in self.rules.values():
            values = read_metric(rule.metric, metrics, containers)
            if values is None:
                continue  # the source is unknown: nothing may change
            for subject, value in values.items():
                transition = self._step(rule, subject, value, now)
                if transition is not None:
                    transitions.append(transition)
            if is_per_container(rule.metric):
                transitions.extend(self._forget_gone(rule, set(values), now))
        return transitions

    def _step(
        self, rule: Rule, subject: str | None, value: Any, now: datetime
    ) -> Transition | None:
        track = self._tracks.setdefault((rule.id, subject), _Track())
        if rule.op in CHANGE:
            holds = _increased(track, value)
            cleared = None if holds is None else not holds
        else:
            holds = rule.holds(value)
            cleared = rule.cleared(value) if track.alert is not None else None

        if track.alert is None:
            if not holds:
                track.pending_since = track.pending_value = None
                return None
            if track.pending_since is None:
                track.pending_since = now
            track.pending_value = value
            if (now - track.pending_since).total_seconds() < rule.for_seconds:
                return None
            track.pending_since = track.pending_value = None
            track.clearing_since = None
            track.alert = Alert(
                id=new_alert_id(),
                rule=rule.id,
                subject=subject,
                metric=rule.metric,
                severity=rule.severity,
                state="firing",
                message=rule.render(value, subject),
                value=value,
                threshold=rule.threshold,
                started_at=stamp(now),
            )
            return Transition("fired", track.alert)

        if cleared is None:
            return None  # unknown: stays firing, and a clearing period in progress holds
        if not cleared:
            track.clearing_since = None
            return None
        if track.clearing_since is None:
            track.clearing_since = now
        if (now - track.clearing_since).total_seconds() < rule.clear_for_seconds:
            return None
        return Transition("resolved", self._resolve(track, value, now))

    def _forget_gone(self, rule: Rule, present: set[str | None], now: datetime) -> list[Transition]:
        transitions = []
        for key in [key for key in self._tracks if key[0] == rule.id and key[1] not in present]:
            track = self._tracks.pop(key)
            if track.alert is not None:
                transitions.append(Transition("resolved", self._resolve(track, None, now)))
        return transitions

    def resolve_orphan(self, alert: Alert, now: datetime) -> Alert:
        """An alert restored from the store whose rule is no longer configured."""
        alert.state, alert.resolved_at = "resolved", stamp(now)
        return alert

    @staticmethod
    def _resolve(track: _Track, value: Any, now: datetime) -> Alert:
        alert = track.alert
        assert alert is not None
        alert.state = "resolved"
        alert.resolved_at = stamp(now)
        alert.resolved_value = value
        track.alert = None
        track.clearing_since = None
        return alert


def _increased(track: _Track, value: Any) -> bool | None:
    """Whether a counter went up since the last known value; None before there are two."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    previous, track.last_number = track.last_number, float(value)
    if previous is None:
        return None
    return value > previous
