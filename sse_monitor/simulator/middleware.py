"""KATO's middleware stack in one: trace ids, the worker that serves, and the session check.

KATO's session middleware answers for any non-GET request under `/sessions/<id>` whose session
is gone, before routing: hence KATO's second 404 body, even on `DELETE`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sse_monitor.simulator.control import CONTROL_PREFIX, bad_request
from sse_monitor.simulator.endpoints import WORKER_SCOPE_KEY
from sse_monitor.simulator.state import ROUTE_TEMPLATES, SimulatedKato
from sse_monitor.simulator.workers import WORKER_HEADER, named_worker


class KatoMiddleware:
    """Adds KATO's headers, picks and times the worker, counts the route, checks the session."""

    def __init__(self, app: ASGIApp, kato: SimulatedKato, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.kato = kato
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra_headers = {"X-Trace-ID": uuid.uuid4().hex}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra_headers.items():
                    headers.append(name, value)
            await send(message)

        if scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send_with_headers)
            return
        try:
            index = named_worker(Headers(scope=scope).get(WORKER_HEADER), len(self.kato.workers))
        except ValueError as exc:
            await bad_request(str(exc))(scope, receive, send_with_headers)
            return
        worker = self.kato.take_worker(index)
        scope[WORKER_SCOPE_KEY] = worker
        template = self._template(scope)
        if template is not None:
            self.kato.count_request(template)
        started = time.perf_counter()
        try:
            await self._check_session(scope, receive, send_with_headers, extra_headers)
        finally:
            worker.record_response_time(time.perf_counter() - started)

    async def _check_session(
        self, scope: Scope, receive: Receive, send: Send, extra_headers: dict[str, str]
    ) -> None:
        """Refuse a request on a gone session as KATO's session middleware does, or go on
        (naming the session in `X-Session-ID`)."""
        session_id = _session_scoped_id(scope["path"], scope["method"])
        if session_id is not None:
            if self.kato.sessions.get(session_id) is None:
                await _session_not_found(session_id)(scope, receive, send)
                return
            extra_headers["X-Session-ID"] = session_id
        await self.app(scope, receive, send)

    def _template(self, scope: Scope) -> str | None:
        """The KATO route template the router will pick (or 405 on), if any."""
        partial: str | None = None
        for route in self.routes:
            if not isinstance(route, Route) or route.path not in ROUTE_TEMPLATES:
                continue
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route.path
            if match is Match.PARTIAL and partial is None:
                partial = route.path
        return partial


def _session_scoped_id(path: str, method: str) -> str | None:
    """The session id KATO's session middleware validates for this request, if any."""
    parts = path.split("/")
    if not path.startswith("/sessions/") or not parts[2]:
        return None
    if len(parts) == 3 and method == "GET":
        return None  # GET /sessions/{id} (and /sessions/count) are left to the endpoint
    return parts[2]


def _session_not_found(session_id: str) -> Response:
    error = {
        "code": "SESSION_NOT_FOUND",
        "message": f"Session {session_id} not found or expired",
        "session_id": session_id,
    }
    return JSONResponse({"error": error}, status_code=404)
