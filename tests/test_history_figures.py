"""What a tick records (sse_monitor/history/figures.py), read from snapshots the producer's own
code builds: KatoMonitor from a real simulated KATO's answers, and a containers snapshot in the
collector's shape."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from sse_monitor.bus.event import Event
from sse_monitor.history.figures import SERIES_FROM_KATO, SESSIONS_ACTIVE, figures_of
from sse_monitor.monitor.kato import KatoMonitor
from sse_monitor.monitor.sessions import SessionMonitor
from sse_monitor.simulator.state import SimulatedKato
from sse_monitor.sources.kato import KatoClient
from tests.support.kato import running_kato


async def metrics_snapshot(kato_url: str) -> dict[str, Any]:
    """One tick of the real KATO monitor against `kato_url`: the `metrics` it appends."""
    appended: list[Event] = []
    client = KatoClient(kato_url, timeout=2.0)
    try:
        monitor = KatoMonitor(
            client, appended.append, SessionMonitor(appended.append), kato_url=kato_url
        )
        await monitor.poll()
    finally:
        await client.aclose()
    return next(event.data for event in reversed(appended) if event.name == "metrics")


async def test_kato_figures_are_the_snapshot_s_and_sessions_its_count() -> None:
    state = SimulatedKato()
    with running_kato(state) as kato:
        async with httpx.AsyncClient(base_url=kato.url, timeout=5) as http:
            (await http.post("/sessions", json={"node_id": "n"})).raise_for_status()
        metrics = await metrics_snapshot(kato.url)
    figures = figures_of(metrics, None)
    resources = metrics["kato"]["resources"]
    assert figures["kato.cpu_percent"] == pytest.approx(resources["cpu_percent"])
    assert figures["kato.response_time_seconds"] == pytest.approx(
        metrics["kato"]["performance"]["average_response_time"]
    )
    assert figures[SESSIONS_ACTIVE] == 1.0
    assert set(figures) == {*SERIES_FROM_KATO, SESSIONS_ACTIVE}
    assert all(value is not None and math.isfinite(value) for value in figures.values())


async def test_an_unreachable_kato_records_gaps_not_zeros() -> None:
    with running_kato(SimulatedKato()) as kato:
        url = kato.url
    metrics = await metrics_snapshot(url)  # nothing listens there any more
    figures = figures_of(metrics, None)
    assert metrics["kato"]["status"] == "unreachable"
    assert all(figures[series] is None for series in SERIES_FROM_KATO)


def containers_snapshot(*containers: dict[str, Any], available: bool = True) -> dict[str, Any]:
    stamp = datetime(2026, 11, 30, tzinfo=UTC).isoformat()
    return {"timestamp": stamp, "available": available, "containers": list(containers)}


def test_each_watched_container_has_its_four_series() -> None:
    kato = {
        "name": "kato",
        "cpu_percent": 12.5,
        "memory": {"used": 300_000_000, "limit": 1_000_000_000, "percent": 30.0},
        "network": {"rx_rate": 1024.0, "tx_rate": 2048.0},
    }
    fresh = {"name": "kato-worker", "cpu_percent": None, "memory": {"used": None}, "network": {}}
    figures = figures_of(None, containers_snapshot(kato, fresh))
    assert figures == {
        "container.kato.cpu_percent": 12.5,
        "container.kato.memory_used": 300_000_000.0,
        "container.kato.rx_rate": 1024.0,
        "container.kato.tx_rate": 2048.0,
        # no sample yet: gaps, not zeros
        "container.kato-worker.cpu_percent": None,
        "container.kato-worker.memory_used": None,
        "container.kato-worker.rx_rate": None,
        "container.kato-worker.tx_rate": None,
    }
    assert figures_of(None, containers_snapshot(kato, available=False)) == {}


@pytest.mark.parametrize("odd", ["12", True, float("nan"), float("inf"), [1], {"a": 1}])
def test_anything_but_a_finite_number_is_a_gap(odd: object) -> None:
    container = {"name": "kato", "cpu_percent": odd, "memory": odd, "network": odd}
    figures = figures_of(
        {"kato": odd, "sessions": {"active_count": odd}}, containers_snapshot(container)
    )
    assert set(figures.values()) == {None}
