"""History on the server, end to end: a gateway process records what it publishes, answers it at
GET /api/history, keeps it across a restart, and refuses bad parameters with a 400 naming them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from sse_monitor.history.sqlite_store import SqliteHistory
from tests.support.gateway import GatewayProcess
from tests.support.history_answers import (
    SERIES,
    assert_recorded_as_published,
    history,
    once_recorded,
)
from tests.support.http import tls
from tests.support.kato import Kato, running_kato
from tests.support.sse_client import SSEStream


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    with running_kato() as kato, GatewayProcess(kato.url) as gateway:
        yield gateway


async def test_recorded_figures_are_the_published_ones_and_a_restart_keeps_them(
    kato: Kato, tmp_path: Path
) -> None:
    env = {"SSE_MONITOR_DB": str(tmp_path / "sse-monitor.db")}
    with GatewayProcess(kato.url, env=env) as gateway:
        async with SSEStream(f"{gateway.url}/events?topics=metrics,sessions") as stream:
            await stream.wait_for(lambda events: len(stream.of("metrics")) >= 6)
            async with httpx.AsyncClient(base_url=kato.url, timeout=5, verify=tls()) as http:
                (await http.post("/sessions", json={"node_id": "h"})).raise_for_status()
            created = await stream.wait_for_event("session_event")
        published = [event.json() for event in stream.of("metrics")]
        since = published[0]["timestamp"]
        answer = await once_recorded(gateway.url, published)
    assert_recorded_as_published(answer, published, created.json())
    by_time = {point[0]: point[1] for point in answer["series"]["kato.cpu_percent"]}
    assert answer["step"] == 0 and answer["truncated"] == []

    restarting = time.time()
    with GatewayProcess(kato.url, env=env) as restarted:
        again = await history(restarted.url, series=SERIES, since=since, step=0)
        kept = {point[0]: point[1] for point in again["series"]["kato.cpu_percent"]}
        assert all(kept[at] == value for at, value in by_time.items())
        # No tick while the gateway was down: a gap between the two lives, not a line across.
        points = again["series"]["kato.cpu_percent"]
        # (A tick late by a loaded machine may add a gap of its own elsewhere: look for this one.)
        across = [
            (points[n - 1], points[n + 1])
            for n, point in enumerate(points)
            if point[1] is None
            and 0 < n < len(points) - 1
            and datetime.fromisoformat(points[n - 1][0]).timestamp()
            < restarting
            <= datetime.fromisoformat(points[n + 1][0]).timestamp()
        ]
        assert len(across) == 1, points
        before, after = across[0]
        down = datetime.fromisoformat(after[0]) - datetime.fromisoformat(before[0])
        assert down.total_seconds() > 3 * 0.2  # the poll interval: no tick ran between
        async with httpx.AsyncClient(base_url=restarted.url, timeout=5, verify=tls()) as http:
            listed = (await http.get("/api/history/series")).json()
        assert {"kato.cpu_percent", "sessions.active"} <= set(listed["series"])
        assert [tier["step"] for tier in listed["tiers"]] == [0, 60, 900]


@pytest.mark.parametrize(
    ("back", "step"),
    [
        (15 * 60, 0),
        (3600, 0),  # the page's "1 h", a little late: every tick still
        (3600 + 600, 60),
        (86400, 60),
        (86400 + 600, 900),
        (7 * 86400, 900),
    ],
)
async def test_the_range_chooses_the_resolution(
    gateway: GatewayProcess, back: float, step: float
) -> None:
    # `since` from the client's clock, a moment before the server reads its own: the range
    # still reaches only as far back as its tier keeps (1 h of ticks, 24 h of 1-minute buckets).
    answer = await history(gateway.url, series="kato.cpu_percent", since=time.time() - back - 1)
    assert answer["step"] == step


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"step": "7"}, "step"),
        ({"step": "nan"}, "step"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-30T03:00:00"}, "since"),  # no zone
        ({"until": "1e300"}, "until"),
        ({"since": "2026-11-30T04:00:00+00:00", "until": "2026-11-30T03:00:00+00:00"}, "since"),
        ({"series": "kato.cpu_percent,<script>"}, "series"),
        ({"series": ",".join(f"s{n}" for n in range(51))}, "series"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(
    gateway: GatewayProcess, params: dict[str, str], parameter: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=5, verify=tls()) as http:
        response = await http.get("/api/history", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == parameter


async def test_more_series_kept_than_one_request_may_name_is_a_400_without_series(
    tmp_path: Path,
) -> None:
    # Every container watched leaves four series for 30 days: "every series" must not grow
    # the answer past what a request may name (300 containers answered 36 MB).
    path = tmp_path / "sse-monitor.db"
    store = SqliteHistory(str(path))
    await store.open()
    store.record(time.time() - 60, {f"container.c{n}.cpu_percent": 1.0 for n in range(51)})
    await store.flush()
    await store.aclose()
    env = {"SSE_MONITOR_DB": str(path)}
    with running_kato() as kato, GatewayProcess(kato.url, env=env) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5, verify=tls()) as http:
            response = await http.get("/api/history")
        assert response.status_code == 400, response.text
        assert response.json()["parameter"] == "series"
        named = await history(gateway.url, series="container.c0.cpu_percent")
        assert named["series"]["container.c0.cpu_percent"][-1][1] == 1.0
