"""GET /api/history (points, buckets and markers over a time range) and /api/history/series.

The resolution follows the range unless `step` asks for one: every point up to an hour, then
1-minute buckets up to a day, then 15-minute buckets; a tier older than its retention has
nothing to give, so a range reaching past it is answered from a coarser one. No series in an
answer holds more than MAX_POINTS points: past that the newest are kept and `truncated` says so.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sse_monitor.history.buckets import Row, Tier
from sse_monitor.history.markers import Marker
from sse_monitor.history.store import HistoryReader
from sse_monitor.web.access import VIEWER, Access
from sse_monitor.web.errors import BadRequest

MAX_POINTS = 5000  # per series in one answer
MAX_SERIES = 50  # in one request
MAX_MARKERS = 5000
GAP_TICKS = 3  # points further apart than this many poll intervals have a gap between them
DEFAULT_RANGE_SECONDS = 3600.0
# A range "the last 24 hours" reaches a little past the 1-minute tier's retention by the time it
# arrives (and by the browser's clock skew): up to this much further back still counts as within.
RANGE_SLACK_SECONDS = 300.0
LATEST = 95_617_584_000.0  # 5000-01-01: later is a typo, and datetime ends at 9999
_SERIES_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def history_routes(history: HistoryReader, access: Access, *, interval: float) -> list[Route]:
    """`interval`: the poll interval; points further apart than a few of it had no tick
    between them (the gateway was down), which reads as a gap."""

    async def read(request: Request) -> Response:
        now = time.time()
        until = _moment(request, "until", default=now)
        since = _moment(request, "since", default=until - DEFAULT_RANGE_SECONDS)
        if since >= until:
            raise BadRequest("since must be before until", parameter="since")
        step = _step(request, history.tiers, since, now)
        names = _series(request) or _at_most(await history.series())
        found = await history.points(names, since, until, step)
        markers = await history.markers(since, until, MAX_MARKERS)
        # Tens of thousands of points are shaped and encoded in a worker thread, not on the
        # loop that feeds every stream (24 h of every series took 0.4 s there).
        answer = partial(_answer, found, markers, since=since, until=until, step=step)
        return await asyncio.to_thread(answer, interval=interval)

    async def series(request: Request) -> Response:
        tiers = [
            {"name": t.name, "step": t.step, "retention_seconds": t.retention}
            for t in history.tiers
        ]
        return JSONResponse({"series": await history.series(), "tiers": tiers})

    return [
        Route("/api/history", access.protect(VIEWER, read), methods=["GET"]),
        Route("/api/history/series", access.protect(VIEWER, series), methods=["GET"]),
    ]


def _answer(
    found: dict[str, list[Row]],
    markers: list[Marker],
    *,
    since: float,
    until: float,
    step: float,
    interval: float,
) -> Response:
    """The answer's JSON, encoded by orjson: 6 ms for 24 h of 23 series, where the json
    module took 90 ms."""
    if step == 0:
        found = {name: _untick_gaps(rows, interval) for name, rows in found.items()}
    truncated = [name for name, rows in found.items() if len(rows) > MAX_POINTS]
    stamp = _stamper()
    body = orjson.dumps(
        {
            "since": stamp(since),
            "until": stamp(until),
            "step": step,
            "max_points": MAX_POINTS,
            "truncated": truncated,
            "series": {
                name: [_point(row, step, stamp) for row in rows[-MAX_POINTS:]]
                for name, rows in found.items()
            },
            "markers": [{"time": stamp(m.time), "kind": m.kind, **m.data} for m in markers],
        }
    )
    return Response(body, media_type="application/json")


def _stamper() -> Callable[[float], str]:
    """ISO times for one answer, each written once: every series of a tick (or a bucket)
    shares its time, so this writes a few thousand strings rather than tens of thousands."""
    written: dict[float, str] = {}

    def stamp(seconds: float) -> str:
        text = written.get(seconds)
        if text is None:
            text = written[seconds] = _iso(seconds)
        return text

    return stamp


def _untick_gaps(rows: list[Row], interval: float) -> list[Row]:
    """A gap after each point followed by none for more than GAP_TICKS ticks: no tick ran
    then (the gateway was down, or stopped), and a chart must not draw a line across."""
    answer: list[Row] = []
    for row in rows:
        if answer and answer[-1][4] and row[0] - answer[-1][0] > GAP_TICKS * interval:
            answer.append((answer[-1][0] + interval, None, None, None, 0))
        answer.append(row)
    return answer


def _point(row: Row, step: float, stamp: Callable[[float], str]) -> list[object]:
    """[time, value] for a point, [time, min, mean, max] for a bucket; values null in a gap."""
    t, low, mean, high, _ = row
    return [stamp(t), mean] if step == 0 else [stamp(t), low, mean, high]


def _step(request: Request, tiers: Sequence[Tier], since: float, now: float) -> float:
    """The tier asked for, or the finest whose retention still reaches back to `since` (give
    or take RANGE_SLACK_SECONDS)."""
    raw = request.query_params.get("step")
    steps = [tier.step for tier in tiers]
    if raw is not None:
        try:
            step = float(raw)
        except ValueError:
            step = math.nan
        if step not in steps:
            choices = ", ".join(f"{s:g}" for s in steps)
            raise BadRequest(f"step must be one of {choices} (seconds)", parameter="step")
        return step
    for tier in tiers:
        if since >= now - tier.retention - RANGE_SLACK_SECONDS:
            return tier.step
    return tiers[-1].step


def _series(request: Request) -> list[str]:
    raw = request.query_params.get("series")
    if raw is None or raw == "":
        return []
    names = list(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    if len(names) > MAX_SERIES or not all(_SERIES_NAME.fullmatch(name) for name in names):
        raise BadRequest(
            f"series must be at most {MAX_SERIES} comma-separated names "
            "(see GET /api/history/series)",
            parameter="series",
        )
    return names


def _at_most(names: list[str]) -> list[str]:
    """Every series kept, when a request names none: no more than it could name (containers
    come and go, and each leaves its series for 30 days)."""
    if len(names) > MAX_SERIES:
        raise BadRequest(
            f"{len(names)} series are kept: name at most {MAX_SERIES} in series "
            "(see GET /api/history/series)",
            parameter="series",
        )
    return names


def _moment(request: Request, name: str, *, default: float) -> float:
    """An ISO-8601 time with its zone, or seconds since the epoch, from 1970 to year 5000."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    seconds = math.nan
    if len(raw) <= 40:
        try:
            seconds = float(raw)
        except ValueError:
            try:
                moment = datetime.fromisoformat(raw)
            except ValueError:
                moment = None
            if moment is not None and moment.tzinfo is not None:
                seconds = moment.timestamp()
    if not (math.isfinite(seconds) and DEFAULT_RANGE_SECONDS <= seconds < LATEST):
        raise BadRequest(
            f"{name} must be an ISO-8601 time with its zone or seconds since the epoch "
            "(1970 to 5000)",
            parameter=name,
        )
    return seconds


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
