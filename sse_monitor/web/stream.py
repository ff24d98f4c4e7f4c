"""GET /events: the SSE stream, written straight onto ASGI, drawing from the log and the fan-out.

The first write carries `retry:` and the client's starting frames (the current state, or the
durable events it missed); after that, whatever the fan-out queues for this client, sent as
one write per wake-up, and a keep-alive comment when nothing was sent for the ping interval.

Each stream is the request's own task plus one small task waiting for the client to go away:
no task group, no per-write cancel scope, no generator. (sse-starlette's EventSourceResponse,
used before, runs four tasks per stream and a cancel scope per send; at thousands of clients
that was most of the memory per client and of the garbage the collector walks.) A write that
blocks longer than the send timeout drops the client, its connection aborted; a disconnect, an
overflowing buffer or the server's shutdown each end the stream at once and free its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import structlog
from sse_starlette.sse import AppStatus
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sse_monitor.bus.event import TOPICS, Event
from sse_monitor.bus.fanout import FanOut, Subscription
from sse_monitor.bus.log import Frame, LogReader
from sse_monitor.settings import Settings
from sse_monitor.web.addresses import client_address
from sse_monitor.web.errors import BadRequest, json_error
from sse_monitor.web.parameters import event_id_param
from sse_monitor.web.registry import OpenStream, Refusal, StreamRegistry
from sse_monitor.web.socket_write import ChunkEncoder, SocketWriter

log = structlog.get_logger("sse_monitor.web.stream")

PING = b": ping\n\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # nginx passes frames through unbuffered with this (deploy/nginx.conf also turns it off)
    (b"x-accel-buffering", b"no"),
]
SHUTDOWN_POLL_SECONDS = 0.25
ABORT_WAIT_SECONDS = 1.0


class StreamResponse:
    """One client's stream: an ASGI app for the life of the connection."""

    def __init__(self, stream: OpenStream, last_event_id: str | None, endpoint: EventStream):
        self.stream = stream
        self.last_event_id = last_event_id
        self.endpoint = endpoint  # what every stream shares: the log, the fan-out, the limits
        self._send: Send | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = "client"
        subscription: Subscription | None = None
        watcher: asyncio.Task[None] | None = None
        try:
            if scope.get("method") == "HEAD":
                await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
                await send({"type": "http.response.body", "body": b""})
                return
            # Subscribed before the replay is read: what is appended meanwhile is held, and
            # `start` keeps what the replay did not cover.
            subscription = self.endpoint.fanout.subscribe(self.stream.topics)
            self.stream.subscription = subscription
            watcher = asyncio.get_running_loop().create_task(
                _close_on_disconnect(receive, subscription)
            )
            await self._write(
                send, {"type": "http.response.start", "status": 200, "headers": HEADERS}
            )
            subscription.start(await self.endpoint.event_log.replay(self.last_event_id))
            # retry: first, and at once, so a client that gets nothing else yet knows how
            # soon to come back.
            first = await subscription.next_chunk() if subscription.backlog else b"\n"
            if first is None:
                return
            await self._body(send, self.endpoint.retry + first)
            await self._relay(send, receive, subscription)
        except TimeoutError:
            reason = "stuck"
            log.warning("stream.dropped", reason="send_timeout", client=self.stream.client)
            await _abort_connection(receive)
        finally:
            if watcher is not None:
                watcher.cancel()
            if subscription is not None:
                closed = subscription.closed_reason
                if reason == "client" and closed not in (None, "client"):
                    reason = "lagging" if closed == "overflow" else "shutdown"
                self.endpoint.fanout.unsubscribe(subscription)
            self.endpoint.fanout.stats.closed[reason] += 1
            self.endpoint.registry.release(self.stream)

    async def _relay(self, send: Send, receive: Receive, subscription: Subscription) -> None:
        """Live frames until the subscription closes: written through while idle, else sent
        by this task, a chunk per wake-up."""
        self._send = send
        socket = SocketWriter.for_request(receive, self.endpoint.chunks)
        write_through = socket.write if socket is not None else self.write_now
        while True:
            subscription.write_through = write_through  # idle: deliveries write directly
            chunk = await subscription.next_chunk()
            subscription.write_through = None
            if chunk is None:
                break
            await self._body(send, chunk)
        if subscription.closed_reason == "overflow":
            log.info("stream.closed", reason="overflow", client=self.stream.client)
        if subscription.closed_reason != "client":
            await self._write(send, {"type": "http.response.body", "body": b""})

    def write_now(self, frame: Frame) -> bool:
        """Write a frame from the fan-out's loop, without waking this stream's task, through
        ASGI (under uvicorn's httptools protocol, SocketWriter does it for less).

        uvicorn's send() writes to the transport at once, or, when the socket's buffer is
        full, first waits for the client to drain it, before writing anything. So one step of
        the send coroutine either finishes (True: the frame is on its way), or stops at that
        wait: then the coroutine is dropped unwritten (False), the frame is queued, and this
        stream's task sends it under the send timeout, as any queued frame.
        """
        assert self._send is not None
        message = {"type": "http.response.body", "body": frame.data, "more_body": True}
        sending = self._send(message)  # type: ignore[arg-type]
        try:
            sending.send(None)
        except StopIteration:
            return True
        except Exception as error:  # the client's socket broke: its stream ends
            log.warning("stream.write_failed", client=self.stream.client, error=repr(error)[:200])
            if self.stream.subscription is not None:
                self.stream.subscription.close("client")
            return True
        sending.close()
        return False

    async def _body(self, send: Send, data: bytes) -> None:
        await self._write(send, {"type": "http.response.body", "body": data, "more_body": True})

    async def _write(self, send: Send, message: dict[str, object]) -> None:
        # A client that stops reading fills the socket's buffers; then this send waits for
        # it. Past the send timeout it is treated as gone (TimeoutError, caught above).
        async with asyncio.timeout(self.endpoint.send_timeout):
            await send(message)  # type: ignore[arg-type]


async def _close_on_disconnect(receive: Receive, subscription: Subscription) -> None:
    """Wait for the client to go away (the request body of a GET is empty), then end the
    stream: its writer is woken at once, rather than at the next event."""
    while (await receive())["type"] != "http.disconnect":
        pass
    subscription.close("client")


async def _abort_connection(receive: Receive) -> None:
    """End a stuck client's connection now, discarding what it never read.

    ASGI has no word for this. Returning mid-response instead makes uvicorn log an error and
    close the transport gracefully, which waits to flush the buffered frames: for a client that
    never reads, for ever (its memory held, and the server's shutdown kept waiting). uvicorn's
    `receive` is a method of its request cycle, which holds the connection's transport; aborting
    it is what uvicorn does itself when a write fails, and then it sees a client that went away
    rather than an unfinished response. Under another server this does nothing.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    if not callable(abort):
        return
    abort()
    # The server learns of it on the loop's next turn (connection_lost): wait for that, so
    # that the request is marked disconnected before this app returns.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ABORT_WAIT_SECONDS):
            while (await receive())["type"] != "http.disconnect":
                pass


async def keep_alive(fanout: FanOut, ping_interval: float) -> None:
    """One task for the whole app: a keep-alive comment to each stream silent for the ping
    interval (swept every half interval, so silence never lasts longer), written through like
    any frame. Proxies and browsers then never take an idle stream for a dead one."""
    while True:
        await asyncio.sleep(ping_interval / 2)
        try:
            fanout.keep_alive(Frame(0, "", Event("ping", {}), PING, None, time.monotonic()))
        except Exception:  # never the end of every stream's keep-alives
            log.exception("stream.keep_alive_failed")


async def close_streams_on_shutdown(fanout: FanOut) -> None:
    """One task for the whole app: end every stream when the server is told to stop.

    uvicorn waits for open responses before it runs the lifespan's shutdown, and a stream never
    ends by itself.
    """
    while not server_stopping():  # noqa: ASYNC110 - flags set by a signal handler
        await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
    fanout.close_all("shutdown")


def server_stopping() -> bool:
    """Whether uvicorn was told to stop (SIGTERM or SIGINT).

    sse-starlette's AppStatus learns of it by patching uvicorn's handler at import, which works
    when the app is imported before the server starts. A worker of `serve --workers N` imports
    the app after its server has installed the handler: there, the handler (a method of the
    server) leads to the server's own flag.
    """
    if AppStatus.should_exit:
        return True
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return getattr(server, "should_exit", False) is True


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
        self, event_log: LogReader, fanout: FanOut, registry: StreamRegistry, settings: Settings
    ) -> None:
        self.event_log = event_log
        self.fanout = fanout
        self.registry = registry
        self.retry = f"retry: {settings.retry_ms}\n".encode()
        self.send_timeout = settings.send_timeout
        self.chunks = ChunkEncoder()  # each live frame's chunk, encoded once for all streams
        self._settings = settings

    async def endpoint(self, request: Request) -> Response:
        last_event_id = event_id_param(request, "last_event_id", header="last-event-id")
        topics = parse_topics(request.query_params.get("topics"))
        peer = request.client.host if request.client else None
        client = client_address(peer, request.headers, self._settings.trusted_proxies)
        admitted = self.registry.admit(client, topics)
        if isinstance(admitted, Refusal):
            return self._refuse(admitted, client)
        return StreamResponse(admitted, last_event_id, self)  # type: ignore[return-value]

    def _refuse(self, refusal: Refusal, client: str) -> Response:
        log.warning("stream.refused", reason=refusal.reason, client=client)
        seconds = self._settings.retry_after
        return json_error(refusal.status, refusal.message, retry_after_seconds=seconds)
