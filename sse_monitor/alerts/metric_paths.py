"""What a rule's `metric` can name, and reading it from the latest snapshots.

Paths are dotted paths into the snapshot the `metrics` event carries (`kato.resources.cpu_percent`)
and into each container of the `containers` event (`containers.*.memory.percent`, one value per
container, the wildcard standing for its name). The list below is checked at start-up, so a typo
in a rules file is an error instead of an alert that never fires.

A value that is not known now reads as None, and a rule holds its state on None: figures kept
from an earlier poll while KATO's /metrics fails (the snapshot's `stale`) are not evaluated as if
they were current, and container figures are unknown while the Docker engine is unavailable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONTAINERS_PREFIX = "containers.*."

METRICS_EVENT_PATHS = (
    "kato.status",
    "kato.resources.cpu_percent",
    "kato.resources.memory_percent",
    "kato.resources.disk_percent",
    "kato.performance.total_requests",
    "kato.performance.total_errors",
    "kato.performance.error_rate",
    "kato.performance.average_response_time",
    "kato.rates.requests_per_second",
    "kato.rates.requests_per_minute",
    "kato.rates.errors_per_minute",
    "kato.uptime_seconds",
    "kato.latency_ms",
    "sessions.active_count",
)
CONTAINER_PATHS = tuple(
    CONTAINERS_PREFIX + field
    for field in (
        "status",
        "health",
        "restart_count",
        "oom_killed",
        "cpu_percent",
        "cpu_limit_percent",
        "cpu_limit",
        "memory.used",
        "memory.limit",
        "memory.percent",
        "network.rx_rate",
        "network.tx_rate",
        "pids",
    )
)
METRICS = (*METRICS_EVENT_PATHS, *CONTAINER_PATHS)
# Parts of the metrics snapshot that keep the last good figures when a read fails.
_KEPT_WHEN_STALE = ("kato.resources", "kato.performance", "kato.rates", "kato.uptime_seconds")


def check_metric(path: str) -> None:
    if path not in METRICS:
        raise ValueError(f"`metric` {path!r} is not one of: {', '.join(METRICS)}")


def is_per_container(path: str) -> bool:
    return path.startswith(CONTAINERS_PREFIX)


def read_metric(
    path: str, metrics: Mapping[str, Any] | None, containers: Mapping[str, Any] | None
) -> dict[str | None, Any] | None:
    """Subject -> current value (subject None for KATO's metrics; a container's name otherwise).

    None when the whole source is unknown: no poll yet, or the Docker engine unavailable. Then
    no alert of the rule may change, since no container can be said to be fine or gone.
    """
    if is_per_container(path):
        if containers is None or not containers.get("available"):
            return None
        field = path.removeprefix(CONTAINERS_PREFIX)
        return {c["name"]: _dig(c, field) for c in containers.get("containers") or []}
    if metrics is None:
        return None
    return {None: current_value(path, metrics)}


def current_value(path: str, metrics: Mapping[str, Any]) -> Any:
    """A value of the metrics snapshot if it is current, else None."""
    unreachable = metrics.get("kato", {}).get("status") == "unreachable"
    if path != "kato.status" and unreachable:
        return None
    if metrics.get("stale") and any(path.startswith(part) for part in _KEPT_WHEN_STALE):
        return None
    return _dig(metrics, path)


def _dig(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value
