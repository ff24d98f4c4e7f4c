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

from sse_monitor.addresses import client_address
from sse_monitor.broadcaster import Broadcaster
from sse_monitor.config import Settings
from sse_monitor.errors import BadRequest, json_error
from sse_monitor.events import TOPICS
from sse_monitor.parameters import event_id_param
from sse_monitor.streams import OpenStream, Refusal, StreamRegistry

log = structlog.get_logger("sse_monitor.stream")


class EventStreamResponse(EventSourceResponse):
    """An EventSourceResponse that treats a client too slow to take a frame as gone."""

    def __init__(
        self,
        *args: object,
        stream: OpenStream,
        broadcaster: Broadcaster,
        registry: StreamRegistry,
        **kw: object,
    ) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.stream = stream
        self.broadcaster = broadcaster
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = "client"
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            reason = "stuck"
            log.info("stream.dropped", reason="send_timeout", client=self.stream.client)
        finally:
            # Here rather than in the generator: this runs even for a response that never
            # started streaming, or whose generator is left to the garbage collector.
            subscription = self.stream.subscription
            if subscription is not None:
                if reason == "client" and subscription.closed_reason is not None:
                    reason = "lagging" if subscription.closed_reason == "overflow" else "shutdown"
                self.broadcaster.unsubscribe(subscription)
            self.broadcaster.stats.closed[reason] += 1
            self.registry.release(self.stream)


def parse_topics(raw: str | None) -> tuple[str, ...]:
    """`?topics=metrics,alerts`: every topic by default; an unknown one is a 400 listing them."""
    if raw is None:
        return TOPICS
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        raise BadRequest(f"topics must name one or more of {', '.join(TOPICS)}", parameter="topics")
    for name in names:
        if name not in TOPICS:
            raise BadRequest(
                f"unknown topic {name[:40]!r}; the topics are {', '.join(TOPICS)}",
                parameter="topics",
                valid_topics=list(TOPICS),
            )
    return tuple(topic for topic in TOPICS if topic in names)


class EventStream:
    """The endpoint; it holds what it needs, handed over by the app factory."""

    def __init__(
        self, broadcaster: Broadcaster, registry: StreamRegistry, settings: Settings
    ) -> None:
        self._broadcaster = broadcaster
        self._registry = registry
        self._settings = settings
        self._retry = f"retry: {settings.retry_ms}\n".encode()

    async def endpoint(self, request: Request) -> Response:
        last_event_id = event_id_param(request, "last_event_id", header="last-event-id")
        topics = parse_topics(request.query_params.get("topics"))
        peer = request.client.host if request.client else None
        client = client_address(peer, request.headers, self._settings.trusted_proxies)
        admitted = self._registry.admit(client, topics)
        if isinstance(admitted, Refusal):
            return self._refuse(admitted, client)
        return EventStreamResponse(
            self._frames(admitted, last_event_id),
            ping=self._settings.ping_interval,
            send_timeout=self._settings.send_timeout,
            headers={"Cache-Control": "no-store"},
            stream=admitted,
            broadcaster=self._broadcaster,
            registry=self._registry,
        )

    def _refuse(self, refusal: Refusal, client: str) -> Response:
        log.warning("stream.refused", reason=refusal.reason, client=client)
        seconds = self._settings.retry_after
        response = json_error(refusal.status, refusal.message, retry_after_seconds=seconds)
        response.headers["Retry-After"] = str(seconds)
        return response

    async def _frames(self, stream: OpenStream, last_event_id: str | None) -> AsyncIterator[bytes]:
        # Subscribing here, not in the endpoint, ties the subscription to the generator's life:
        # a response that never streams (HEAD, a client gone before the start) holds nothing.
        subscription = self._broadcaster.subscribe(last_event_id, stream.topics)
        stream.subscription = subscription
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
                log.info("stream.closed", reason="overflow", client=stream.client)
        finally:
            self._broadcaster.unsubscribe(subscription)
