"""CORS for an allowlist of origins, with refusals in the same JSON shape as every other error.

Starlette's middleware refuses a preflight with a plain-text 400 that still carries the allow
headers (`Access-Control-Allow-Credentials`, the methods); a refused origin is told nothing but
the JSON error, so a client sees one error shape and a browser sees no grant to misread.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from sse_monitor.web.errors import json_error

REFUSED_PREFIX = "Disallowed CORS "


class AllowlistCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode().removeprefix(REFUSED_PREFIX)
        error = json_error(400, f"CORS preflight refused: {refused} not allowed")
        error.headers["Vary"] = "Origin"
        return error


def cors_middleware(origins: Sequence[str]) -> Middleware:
    """Credentials allowed, for EventSource's withCredentials: hence a list, never `*`."""
    return Middleware(
        AllowlistCORSMiddleware,
        allow_origins=list(origins),
        allow_credentials=True,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        expose_headers=["Retry-After"],
        max_age=600,
    )
