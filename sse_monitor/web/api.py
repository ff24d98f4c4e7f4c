"""JSON endpoints over the event log: the current state, the durable history, the streams.

Nothing here calls KATO: a request reads what the producer already appended, so a page that falls
back to polling these endpoints adds no upstream load, and any process that can read the log can
answer them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sse_monitor.bus.fanout import FanOut
from sse_monitor.bus.log import EventLog, Frame
from sse_monitor.clock import iso, utc_now
from sse_monitor.sources.kato_redis import SessionList, SessionListError
from sse_monitor.web.access import ADMIN, VIEWER, Access
from sse_monitor.web.errors import json_error
from sse_monitor.web.parameters import event_id_param, int_param
from sse_monitor.web.registry import StreamRegistry

ENABLE_SESSION_LIST = (
    "set KATO_REDIS_URL to KATO's Redis (e.g. redis://kato-redis:6379/0): the list is read "
    "from it, read-only"
)


class LogView:
    """What the JSON endpoints read from the log: the current state, by event name."""

    def __init__(self, event_log: EventLog, *, interval: float, history_size: int) -> None:
        self.event_log = event_log
        self._interval = interval
        self._history_size = history_size

    async def state(self, name: str) -> Frame | None:
        return next((f for f in await self.event_log.current() if f.event.name == name), None)

    async def session_count(self) -> tuple[int | None, bool]:
        """KATO's session count as last announced (a `session_event`, or the snapshot's count
        if that is newer), and whether the snapshot is stale."""
        metrics = await self.state("metrics")
        if metrics is None:
            return None, True
        count = metrics.event.data["sessions"]["active_count"]
        for frame in reversed(await self.event_log.recent(self._history_size)):
            if frame.seq < metrics.seq:
                break
            if frame.event.name == "session_event":
                count = frame.event.data["data"]["current_count"]
                break
        return count, bool(metrics.event.data["stale"])

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready once a `metrics` snapshot was appended recently, whatever it says."""
        metrics = await self.state("metrics")
        if metrics is None:
            return False, {}
        age = time.monotonic() - metrics.appended_at
        return age <= 3 * self._interval + 1, dict(metrics.event.data)


def api_routes(
    view: LogView,
    fanout: FanOut,
    registry: StreamRegistry,
    access: Access,
    session_list: SessionList | None,
    *,
    containers_enabled: bool,
    polls: Callable[[], int] | None,
) -> list[Route]:
    async def sessions_count(request: Request) -> Response:
        """The count as it is now (pushes move it between ticks), so stamped now: a page orders
        it against the session events it has seen by this timestamp."""
        count, stale = await view.session_count()
        return JSONResponse({"active_sessions": count, "timestamp": iso(utc_now()), "stale": stale})

    async def sessions_list(request: Request) -> Response:
        """KATO's sessions from its Redis, newest first, `limit` at a time."""
        offset = int_param(request, "offset", default=0, low=0, high=1_000_000)
        limit = int_param(request, "limit", default=10, low=1, high=100)
        if session_list is None:
            return JSONResponse(
                {"available": False, "error": ENABLE_SESSION_LIST, "total": None, "sessions": []}
            )
        try:
            listing = await session_list.listing()
        except SessionListError as exc:
            return json_error(503, str(exc), available=True, retry_after_seconds=5)
        return JSONResponse(
            {
                "available": True,
                "total": len(listing.sessions),
                "truncated": listing.truncated,
                "offset": offset,
                "limit": limit,
                "read_at": iso(listing.read_at),
                "sessions": listing.sessions[offset : offset + limit],
            }
        )

    async def snapshot(request: Request) -> Response:
        metrics = await view.state("metrics")
        if metrics is None:
            return json_error(503, "no poll has completed yet", retry_after_seconds=1)
        return JSONResponse(metrics.event.data)

    async def events(request: Request) -> Response:
        """Durable events after an id, oldest first, `limit` at a time so a client can page
        forward; with no id (or one that cannot be resumed), the newest `limit` of the history."""
        after = event_id_param(request, "after")
        limit = int_param(request, "limit", default=100, low=1, high=1000)
        replay = await view.event_log.replay(after) if after else None
        if replay is None or replay.reset is not None:
            frames = await view.event_log.recent(limit + 1)
            page, more = frames[-limit:], len(frames) > limit
        else:
            frames = [frame for frame in replay.frames if frame.event.durable]
            page, more = frames[:limit], len(frames) > limit
        return JSONResponse(
            {
                "boot": view.event_log.epoch,
                "reset": replay.reset if replay else None,
                "events": [_frame_json(frame) for frame in page],
                "more": more,
            }
        )

    async def containers_snapshot(request: Request) -> Response:
        if not containers_enabled:
            return JSONResponse(
                {
                    "enabled": False,
                    "available": False,
                    "error": "container stats are turned off (SSE_MONITOR_CONTAINER_STATS)",
                    "containers": [],
                    "totals": None,
                }
            )
        snapshot = await view.state("containers")
        if snapshot is None:
            return json_error(503, "the first container sample is not ready yet")
        return JSONResponse({"enabled": True, **snapshot.event.data})

    async def streams(request: Request) -> Response:
        """Open streams by topic and client address, the most lagging first."""
        limit = int_param(request, "limit", default=100, low=1, high=1000)
        return JSONResponse(registry.describe(limit))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready, snapshot = await view.ready()
        body = {
            "ready": ready,
            "polls": polls() if polls is not None else None,
            "streams": fanout.subscriber_count,
            "kato_status": snapshot.get("kato", {}).get("status"),
            "last_poll": snapshot.get("timestamp"),
            # Deployment mistakes (a proxy not trusted): they do not make it unready.
            "warnings": access.warnings(),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    return [
        Route("/api/sessions/count", access.protect(VIEWER, sessions_count), methods=["GET"]),
        Route("/api/sessions", access.protect(VIEWER, sessions_list), methods=["GET"]),
        Route("/api/snapshot", access.protect(VIEWER, snapshot), methods=["GET"]),
        Route("/api/events", access.protect(VIEWER, events), methods=["GET"]),
        Route("/api/containers", access.protect(VIEWER, containers_snapshot), methods=["GET"]),
        Route("/api/streams", access.protect(ADMIN, streams), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


def _frame_json(frame: Frame) -> dict[str, Any]:
    return {"id": frame.id, "event": frame.event.name, "data": frame.event.data}
