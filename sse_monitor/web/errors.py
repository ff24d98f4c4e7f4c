"""JSON error answers: every failure a client sees is a small JSON object, never a stack trace."""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from sse_monitor.alerts.store import StoreUnavailable
from sse_monitor.notify.outbox import OutboxUnavailable

log = structlog.get_logger("sse_monitor.web.errors")

STORE_RETRY_AFTER_SECONDS = 5


class BadRequest(Exception):
    """A client sent a parameter we cannot use; answered with 400 and the reason."""

    def __init__(self, message: str, *, parameter: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter
        self.details = details


def json_error(status: int, message: str, **details: object) -> JSONResponse:
    response = JSONResponse({"error": message, "status": status, **details}, status_code=status)
    if "retry_after_seconds" in details:
        response.headers["Retry-After"] = str(details["retry_after_seconds"])
    return response


async def bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    details = {"parameter": exc.parameter} if exc.parameter else {}
    return json_error(400, exc.message, **details, **exc.details)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    response = json_error(exc.status_code, exc.detail or "error")
    response.headers.update(headers)
    return response


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client went away before sending all of its body: not an error of ours (no trace,
    no error line), and nobody is left to read the answer."""
    log.debug("request.client_gone", method=request.method, path=request.url.path)
    return json_error(400, "the client went away before sending its whole body")


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """The alert store or the notification outbox did not answer (Redis down or restarting):
    try again shortly."""
    log.warning("request.store_unavailable", path=request.url.path, error=str(exc))
    return json_error(503, str(exc), retry_after_seconds=STORE_RETRY_AFTER_SECONDS)


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("request.failed", path=request.url.path)
    return json_error(500, "internal error")


EXCEPTION_HANDLERS = {
    BadRequest: bad_request,
    HTTPException: http_exception,
    ClientDisconnect: client_gone,
    StoreUnavailable: store_unavailable,
    OutboxUnavailable: store_unavailable,
    Exception: server_error,
}
