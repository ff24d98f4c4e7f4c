"""JSON endpoints over the poller's latest snapshot and the broadcaster's history.

Nothing here calls KATO: a request reads what the poller already has, so a page that falls back
to polling these endpoints adds no upstream load.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sse_monitor.bus.fanout import Broadcaster, Frame
from sse_monitor.clock import iso, utc_now
from sse_monitor.monitor.poller import ContainerSource, Poller
from sse_monitor.sources.kato_redis import KatoSessions, SessionListError
from sse_monitor.web.access import ADMIN, VIEWER, Access
from sse_monitor.web.errors import json_error
from sse_monitor.web.parameters import event_id_param, int_param
from sse_monitor.web.registry import StreamRegistry

ENABLE_SESSION_LIST = (
    "set KATO_REDIS_URL to KATO's Redis (e.g. redis://kato-redis:6379/0): the list is read "
    "from it, read-only"
)


def api_routes(
    poller: Poller,
    broadcaster: Broadcaster,
    containers: ContainerSource | None,
    registry: StreamRegistry,
    access: Access,
    kato_sessions: KatoSessions | None,
) -> list[Route]:
    async def sessions_count(request: Request) -> Response:
        """The count as it is now (pushes move it between ticks), so stamped now: a page orders
        it against the session events it has seen by this timestamp."""
        snapshot = poller.snapshot
        return JSONResponse(
            {
                "active_sessions": poller.active_sessions,
                "timestamp": iso(utc_now()),
                "stale": snapshot["stale"] if snapshot else True,
            }
        )

    async def sessions_list(request: Request) -> Response:
        """KATO's sessions from its Redis, newest first, `limit` at a time."""
        offset = int_param(request, "offset", default=0, low=0, high=1_000_000)
        limit = int_param(request, "limit", default=10, low=1, high=100)
        if kato_sessions is None:
            return JSONResponse(
                {"available": False, "error": ENABLE_SESSION_LIST, "total": None, "sessions": []}
            )
        try:
            listing = await kato_sessions.listing()
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
        if poller.snapshot is None:
            return json_error(503, "no poll has completed yet", retry_after_seconds=1)
        return JSONResponse(poller.snapshot)

    async def events(request: Request) -> Response:
        """Durable events after an id, oldest first, `limit` at a time so a client can page
        forward; with no id (or one that cannot be resumed), the newest `limit` of the history."""
        after = event_id_param(request, "after")
        limit = int_param(request, "limit", default=100, low=1, high=1000)
        frames, reset = broadcaster.frames_after(after) if after else ([], None)
        if after is None or reset is not None:
            frames = broadcaster.history()
            page, more = frames[-limit:], len(frames) > limit
        else:
            frames = [frame for frame in frames if frame.event.durable]
            page, more = frames[:limit], len(frames) > limit
        return JSONResponse(
            {
                "boot": broadcaster.boot_id,
                "reset": reset,
                "events": [_frame_json(frame) for frame in page],
                "more": more,
            }
        )

    async def containers_snapshot(request: Request) -> Response:
        if containers is None:
            return JSONResponse(
                {
                    "enabled": False,
                    "available": False,
                    "error": "container stats are turned off (SSE_MONITOR_CONTAINER_STATS)",
                    "containers": [],
                    "totals": None,
                }
            )
        snapshot = containers.snapshot()
        if snapshot is None:
            return json_error(503, "the first container sample is not ready yet")
        return JSONResponse({"enabled": True, **snapshot})

    async def streams(request: Request) -> Response:
        """Open streams by topic and client address, the most lagging first."""
        limit = int_param(request, "limit", default=100, low=1, high=1000)
        return JSONResponse(registry.describe(limit))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready = poller.ready()
        snapshot = poller.snapshot or {}
        body = {
            "ready": ready,
            "polls": poller.tick_count,
            "streams": broadcaster.subscriber_count,
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
