"""What the tests of the history read in a GET /api/history answer: its times, written to the
millisecond, and whether the ticks and the session change a client was sent are in it, with the
same figures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from tests.support.http import tls
from tests.support.waiting import eventually

SERIES = "kato.cpu_percent,kato.memory_percent,sessions.active"


def millis(stamp: str) -> str:
    """An ISO time to the millisecond, as the history answers it."""
    return datetime.fromisoformat(stamp).isoformat(timespec="milliseconds")


async def history(base_url: str, **params: object) -> dict[str, Any]:
    """The gateway's answer to GET /api/history with `params`, a 200."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5, verify=tls()) as http:
        response = await http.get("/api/history", params=params)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        return response.json()


async def once_recorded(base_url: str, published: list[dict[str, Any]]) -> dict[str, Any]:
    """Every point of SERIES since the first `metrics` published, once the last is recorded."""
    since = published[0]["timestamp"]

    async def recorded() -> dict[str, Any] | None:
        answer = await history(base_url, series=SERIES, since=since, step=0)
        times = {point[0] for point in answer["series"]["kato.cpu_percent"]}
        return answer if millis(published[-1]["timestamp"]) in times else None

    return await eventually(recorded, 10, "the last published tick in the history")


def assert_recorded_as_published(
    answer: dict[str, Any], published: list[dict[str, Any]], created: dict[str, Any]
) -> None:
    """Each `metrics` published is a point with its figures, and the `session_event` of a
    session created a marker."""
    by_time = {point[0]: point[1] for point in answer["series"]["kato.cpu_percent"]}
    sessions = {point[0]: point[1] for point in answer["series"]["sessions.active"]}
    for metrics in published:
        at = millis(metrics["timestamp"])
        assert by_time[at] == metrics["kato"]["resources"]["cpu_percent"]
        assert sessions[at] == metrics["sessions"]["active_count"]
    assert {
        "time": millis(created["timestamp"]),
        "kind": "session_created",
        "count": created["data"]["current_count"],
        "delta": 1,
    } in answer["markers"]
