"""JSON endpoints over the event log: the current state, the durable history, the streams.

Nothing here calls KATO: a request reads what the producer already appended, so a page that falls
back to polling these endpoints adds no upstream load, and any process that can read the log can
answer them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sse_monitor.bus.fanout import FanOut
from sse_monitor.bus.log import Frame, LogReader
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


@dataclass
class JsonApi:
    """The JSON endpoints; each reads the log (or the registry), never an upstream."""

    log: LogReader
    fanout: FanOut
    registry: StreamRegistry
    access: Access
    session_list: SessionList | None
    interval: float
    history_size: int
    containers_enabled: bool
    polls: Callable[[], int | None] | None  # the local poller's ticks; None: no producer here
    node: Callable[[], dict[str, Any]]  # this process's role and the log's state

    def routes(self) -> list[Route]:
        viewer, admin = partial(self.access.protect, VIEWER), partial(self.access.protect, ADMIN)
        return [
            Route("/api/sessions/count", viewer(self.sessions_count), methods=["GET"]),
            Route("/api/sessions", viewer(self.sessions_list), methods=["GET"]),
            Route("/api/snapshot", viewer(self.snapshot), methods=["GET"]),
            Route("/api/events", viewer(self.events), methods=["GET"]),
            Route("/api/containers", viewer(self.containers), methods=["GET"]),
            Route("/api/streams", admin(self.streams), methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
        ]

    async def sessions_count(self, request: Request) -> Response:
        """The count as it is now (pushes move it between ticks), so stamped now: a page orders
        it against the session events it has seen by this timestamp."""
        count, stale = await self._session_count()
        return JSONResponse({"active_sessions": count, "timestamp": iso(utc_now()), "stale": stale})

    async def sessions_list(self, request: Request) -> Response:
        """KATO's sessions from its Redis, newest first, `limit` at a time."""
        offset = int_param(request, "offset", default=0, low=0, high=1_000_000)
        limit = int_param(request, "limit", default=10, low=1, high=100)
        if self.session_list is None:
            return JSONResponse(
                {"available": False, "error": ENABLE_SESSION_LIST, "total": None, "sessions": []}
            )
        try:
            listing = await self.session_list.listing()
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

    async def snapshot(self, request: Request) -> Response:
        metrics = await self._state("metrics")
        if metrics is None:
            return json_error(503, "no poll has completed yet", retry_after_seconds=1)
        return JSONResponse(metrics.event.data)

    async def events(self, request: Request) -> Response:
        """Durable events after an id, oldest first, `limit` at a time so a client can page
        forward; with no id (or one that cannot be resumed), the newest `limit` of the history."""
        after = event_id_param(request, "after")
        limit = int_param(request, "limit", default=100, low=1, high=1000)
        replay = await self.log.replay(after) if after else None
        if replay is None or replay.reset is not None:
            frames = await self.log.recent(limit + 1)
            page, more = frames[-limit:], len(frames) > limit
        else:
            frames = [frame for frame in replay.frames if frame.event.durable]
            page, more = frames[:limit], len(frames) > limit
        return JSONResponse(
            {
                "boot": self.log.epoch,
                "reset": replay.reset if replay else None,
                "events": [_frame_json(frame) for frame in page],
                "more": more,
            }
        )

    async def containers(self, request: Request) -> Response:
        if not self.containers_enabled:
            return JSONResponse(
                {
                    "enabled": False,
                    "available": False,
                    "error": "container stats are turned off (SSE_MONITOR_CONTAINER_STATS)",
                    "containers": [],
                    "totals": None,
                }
            )
        snapshot = await self._state("containers")
        if snapshot is None:
            return json_error(503, "the first container sample is not ready yet")
        return JSONResponse({"enabled": True, **snapshot.event.data})

    async def streams(self, request: Request) -> Response:
        """Open streams by topic and client address, the most lagging first."""
        limit = int_param(request, "limit", default=100, low=1, high=1000)
        return JSONResponse(self.registry.describe(limit))

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready once a `metrics` snapshot was appended recently (whatever it says) and the log
        can be read."""
        metrics = await self._state("metrics")
        node = self.node()
        ready = (
            metrics is not None
            and time.monotonic() - metrics.appended_at <= 3 * self.interval + 1
            and node["log"]["state"] == "ok"
        )
        snapshot = metrics.event.data if metrics is not None else {}
        body = {
            "ready": ready,
            **node,
            "polls": self.polls() if self.polls is not None else None,
            "streams": self.fanout.subscriber_count,
            "kato_status": snapshot.get("kato", {}).get("status"),
            "last_poll": snapshot.get("timestamp"),
            # Deployment mistakes (a proxy not trusted): they do not make it unready.
            "warnings": self.access.warnings(),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def _state(self, name: str) -> Frame | None:
        return next((f for f in await self.log.current() if f.event.name == name), None)

    async def _session_count(self) -> tuple[int | None, bool]:
        """KATO's session count as last announced (a `session_event`, or the snapshot's count
        if that is newer), and whether the snapshot is stale."""
        metrics = await self._state("metrics")
        if metrics is None:
            return None, True
        count = metrics.event.data["sessions"]["active_count"]
        for frame in reversed(await self.log.recent(self.history_size)):
            if frame.seq < metrics.seq:
                break
            if frame.event.name == "session_event":
                count = frame.event.data["data"]["current_count"]
                break
        return count, bool(metrics.event.data["stale"])


def _frame_json(frame: Frame) -> dict[str, Any]:
    return {"id": frame.id, "event": frame.event.name, "data": frame.event.data}
