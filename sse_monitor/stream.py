"""GET /events: the SSE stream, one async generator per client drawing from the broadcaster.

The first chunk carries `retry:` and the client's starting frames (the current state, or the
durable events it missed); after that, whatever the broadcaster queues for this client, sent as
one write per wake-up. A disconnect ends the generator and frees its subscription at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from sse_starlette.sse import EventSourceResponse, SendTimeoutError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sse_monitor.broadcaster import Broadcaster
from sse_monitor.config import Settings
from sse_monitor.parameters import event_id_param

log = structlog.get_logger("sse_monitor.stream")


class EventStreamResponse(EventSourceResponse):
    """An EventSourceResponse that treats a client too slow to take a frame as gone."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            client = scope.get("client")
            log.info("stream.dropped", reason="send_timeout", client=client[0] if client else None)


class EventStream:
    """The endpoint; it holds what it needs, handed over by the app factory."""

    def __init__(self, broadcaster: Broadcaster, settings: Settings) -> None:
        self._broadcaster = broadcaster
        self._settings = settings
        self._retry = f"retry: {settings.retry_ms}\n".encode()

    async def endpoint(self, request: Request) -> Response:
        last_event_id = event_id_param(request, "last_event_id", header="last-event-id")
        return EventStreamResponse(
            self._frames(last_event_id),
            ping=self._settings.ping_interval,
            send_timeout=self._settings.send_timeout,
            headers={"Cache-Control": "no-store"},
        )

    async def _frames(self, last_event_id: str | None) -> AsyncIterator[bytes]:
        # Subscribing here, not in the endpoint, ties the subscription to the generator's life:
        # a response that never streams (HEAD, a client gone before the start) holds nothing.
        subscription = self._broadcaster.subscribe(last_event_id)
        try:
            # The first frame carries retry:, so even a client that gets nothing else yet
            # knows how soon to come back; it is sent at once, before any data is ready.
            first = await subscription.next_chunk() if subscription.backlog else b"\n"
            if first is None:
                return
            yield self._retry + first
            while (chunk := await subscription.next_chunk()) is not None:
                yield chunk
            if subscription.closed_reason == "overflow":
                log.info("stream.closed", reason="overflow")
        finally:
            self._broadcaster.unsubscribe(subscription)
