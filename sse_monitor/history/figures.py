"""The figures a tick records: what the page charts, read from the tick's `metrics` and
`containers` snapshots as they were appended to the log.

Series are named `kato.<figure>`, `sessions.active` and `container.<name>.<figure>`. A figure the
snapshot does not know (KATO unreachable or its figures stale, a container without a sample yet)
is a gap (None): recorded as such, so that a chart breaks there instead of drawing across.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# series name: (the metrics snapshot's group under `kato`, the figure in it)
SERIES_FROM_KATO = {
    "kato.cpu_percent": ("resources", "cpu_percent"),
    "kato.memory_percent": ("resources", "memory_percent"),
    "kato.disk_percent": ("resources", "disk_percent"),
    "kato.requests_per_second": ("rates", "requests_per_second"),
    "kato.response_time_seconds": ("performance", "average_response_time"),
    "kato.error_rate": ("performance", "error_rate"),
}
SESSIONS_ACTIVE = "sessions.active"
CONTAINER_FIGURES = ("cpu_percent", "memory_used", "rx_rate", "tx_rate")


def figures_of(
    metrics: Mapping[str, Any] | None, containers: Mapping[str, Any] | None
) -> dict[str, float | None]:
    """Every series this tick has a say in, with its value or None (a gap)."""
    figures: dict[str, float | None] = {}
    if metrics is not None:
        kato = _mapping(metrics.get("kato"))
        stale = bool(metrics.get("stale")) or kato.get("status") == "unreachable"
        for series, (group, name) in SERIES_FROM_KATO.items():
            figures[series] = None if stale else _number(_mapping(kato.get(group)).get(name))
        figures[SESSIONS_ACTIVE] = _number(_mapping(metrics.get("sessions")).get("active_count"))
    if containers is not None and containers.get("available"):
        for container in containers.get("containers") or ():
            figures.update(_container_figures(_mapping(container)))
    return figures


def _container_figures(container: Mapping[str, Any]) -> dict[str, float | None]:
    name = container.get("name")
    if not isinstance(name, str) or not name:
        return {}
    network = _mapping(container.get("network"))
    values = {
        "cpu_percent": container.get("cpu_percent"),
        "memory_used": _mapping(container.get("memory")).get("used"),
        "rx_rate": network.get("rx_rate"),
        "tx_rate": network.get("tx_rate"),
    }
    return {f"container.{name}.{figure}": _number(values[figure]) for figure in CONTAINER_FIGURES}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: object) -> float | None:
    """A finite number as a float; anything else (None, text, a bool, NaN) is a gap."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None
