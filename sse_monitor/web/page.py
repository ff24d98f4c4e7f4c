"""The dashboard page (plain files, no build step) and the index of the JSON API."""

from __future__ import annotations

from pathlib import Path

import structlog
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from sse_monitor.web.errors import json_error

log = structlog.get_logger("sse_monitor.web.page")

# In a checkout (and an editable install) the page is in static/ beside the package; an
# installed wheel carries it inside it.
PAGE_FOLDERS = (
    Path(__file__).resolve().parents[2] / "static",
    Path(__file__).resolve().parents[1] / "static",
)
ENDPOINTS = [
    "events",
    "api/snapshot",
    "api/sessions/count",
    "api/sessions",
    "api/events",
    "api/containers",
    "api/alerts",
    "api/history",
    "api/history/series",
    "api/streams",
    "api/access",
    "login",
    "logout",
    "metrics",
    "healthz",
    "readyz",
]


def page_folder(configured: str | None) -> Path:
    """SSE_MONITOR_STATIC_DIR, else the first of PAGE_FOLDERS that holds the page."""
    if configured:
        return Path(configured)
    return next((f for f in PAGE_FOLDERS if (f / "index.html").is_file()), PAGE_FOLDERS[0])


def page_routes(static_dir: Path, *, access_control: bool) -> list[BaseRoute]:
    """`/` (the page), `/static` (its files) and `/api` (what the gateway serves)."""
    has_page = (static_dir / "index.html").is_file()
    if not has_page:
        # The stream and the API work without the page: say where it was looked for.
        log.warning(
            "page.missing",
            static_dir=str(static_dir),
            hint="set SSE_MONITOR_STATIC_DIR to the folder holding index.html",
        )

    async def page(request: Request) -> Response:
        if not has_page:
            return json_error(404, f"the page is not installed ({static_dir} has no index.html)")
        return FileResponse(static_dir / "index.html", headers={"Cache-Control": "no-cache"})

    async def index(request: Request) -> Response:
        return JSONResponse(
            {
                "service": "sse-monitor",
                "page": "/",
                "stream": "events",
                "endpoints": ENDPOINTS,
                "access_control": access_control,
            }
        )

    routes: list[BaseRoute] = [
        Route("/", page, methods=["GET"]),
        Route("/api", index, methods=["GET"]),
    ]
    if has_page:
        routes.append(Mount("/static", StaticFiles(directory=static_dir), name="static"))
    return routes
