"""GET /api/alerts (history, newest first, paged) and POST /api/alerts/{id}/ack."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sse_monitor.alerts.alert import Alert, stamp
from sse_monitor.alerts.rules import SEVERITIES
from sse_monitor.alerts.store import AlertStorage
from sse_monitor.notify.outbox import Outbox, OutboxUnavailable
from sse_monitor.web.access import ADMIN, VIEWER, Access
from sse_monitor.web.bodies import json_object, read_capped
from sse_monitor.web.errors import BadRequest, json_error
from sse_monitor.web.parameters import choice_param, int_param

STATE_FILTERS = ("firing", "resolved", "all")
MAX_BODY_BYTES = 16 * 1024
MAX_BY_LENGTH = 100
MAX_NOTE_LENGTH = 1000
_ALERT_ID = re.compile(r"^[0-9a-f]{16}$")


Acknowledge = Callable[[str, str, str | None], Awaitable[Alert | None]]


def alert_routes(
    store: AlertStorage, acknowledge: Acknowledge, access: Access, *, outbox: Outbox | None = None
) -> list[Route]:
    """`acknowledge(alert_id, by, note)`: the alert manager's in one process, any node's in a
    cluster (cluster/acks.py). With an `outbox`, each alert says where it was notified."""

    async def list_alerts(request: Request) -> Response:
        state = choice_param(request, "state", STATE_FILTERS, default="all")
        severity = choice_param(request, "severity", SEVERITIES, default=None)
        limit = int_param(request, "limit", default=50, low=1, high=500)
        before = await _cursor(request, store)
        page = await store.page(
            state=None if state == "all" else state,
            severity=severity,
            limit=limit + 1,
            before=before,
        )
        more = len(page) > limit
        page = page[:limit]
        alerts = [alert.to_json() for alert in page]
        if outbox is not None:
            await _add_notices(alerts, outbox)
        return JSONResponse({"alerts": alerts, "next_before": page[-1].id if more else None})

    async def acknowledge_alert(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        by, note = await _ack_body(request)
        if not _ALERT_ID.match(alert_id):
            return json_error(404, f"no alert with id {alert_id[:40]!r}")
        alert = await acknowledge(alert_id, by, note)
        if alert is None:
            return json_error(404, f"no alert with id {alert_id!r}")
        return JSONResponse(alert.to_json())

    return [
        Route("/api/alerts", access.protect(VIEWER, list_alerts), methods=["GET"]),
        Route(
            "/api/alerts/{alert_id}/ack", access.protect(ADMIN, acknowledge_alert), methods=["POST"]
        ),
    ]


async def _add_notices(alerts: list[dict[str, Any]], outbox: Outbox) -> None:
    """Each alert's `notifications`: where its transitions went and how that went; null when
    the outbox does not answer (the alerts themselves are still worth showing)."""
    try:
        notices = await outbox.notices([alert["id"] for alert in alerts])
    except OutboxUnavailable:
        for alert in alerts:
            alert["notifications"] = None
        return
    for alert in alerts:
        alert["notifications"] = [n.to_json() for n in notices.get(alert["id"], [])]


async def _cursor(request: Request, store: AlertStorage) -> tuple[str, str] | None:
    """`before`: an alert id (the previous page's `next_before`) or an ISO-8601 time."""
    raw = request.query_params.get("before")
    if not raw:
        return None
    if _ALERT_ID.match(raw):
        alert = await store.get(raw)
        if alert is None:
            raise BadRequest(f"before: no alert with id {raw!r}", parameter="before")
        return alert.started_at, alert.id
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(
            "before must be an alert id or an ISO-8601 time", parameter="before"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return stamp(moment), ""
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00: before year 1 in UTC
        raise BadRequest(
            "before must be a time within years 1 to 9999 in UTC", parameter="before"
        ) from None


async def _ack_body(request: Request) -> tuple[str, str | None]:
    body = await read_capped(request, MAX_BODY_BYTES)
    data = json_object(body, example='{"by": "alice", "note": "on it"}')
    unknown = sorted(set(data) - {"by", "note"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (the fields are by and note)")
    by, note = data.get("by"), data.get("note")
    if not isinstance(by, str) or not by.strip() or len(by) > MAX_BY_LENGTH:
        raise BadRequest(f"by must be a name of 1 to {MAX_BY_LENGTH} characters", parameter="by")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH):
        raise BadRequest(
            f"note must be a string of at most {MAX_NOTE_LENGTH} characters", parameter="note"
        )
    return by.strip(), (note.strip() or None) if note else None
