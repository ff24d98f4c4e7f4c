"""GET /api/notifications (admin): the receivers, and the recent deliveries with their state,
attempts and last error. Never a body, a receiver's URL or its secret: those stay in the
configuration (a Slack webhook's URL is its credential)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sse_monitor.alerts.alert import stamp
from sse_monitor.notify.outbox import Delivery, Outbox
from sse_monitor.notify.receivers import Receiver
from sse_monitor.web.access import ADMIN, Access
from sse_monitor.web.parameters import int_param


def notify_routes(outbox: Outbox, receivers: Sequence[Receiver], access: Access) -> list[Route]:
    described = [
        {"name": r.name, "kind": r.kind, "send_resolved": r.send_resolved} for r in receivers
    ]

    async def list_notifications(request: Request) -> Response:
        limit = int_param(request, "limit", default=50, low=1, high=500)
        deliveries = await outbox.recent(limit)
        return JSONResponse(
            {
                "receivers": described,
                "notifications": [delivery_to_json(d) for d in deliveries],
            }
        )

    return [Route("/api/notifications", access.protect(ADMIN, list_notifications), methods=["GET"])]


def delivery_to_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "receiver": delivery.receiver,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "created": _time(delivery.created),
        "next_attempt": _time(delivery.next_attempt) if delivery.state == "pending" else None,
        "idempotency_key": delivery.idempotency_key,
        "alerts": [{"id": alert_id, "transition": kind} for alert_id, kind in delivery.alerts],
    }


def _time(seconds: float) -> str:
    return stamp(datetime.fromtimestamp(seconds, UTC))
