"""A live frame written straight onto the client's socket, as uvicorn's httptools send would.

The fan-out hands each frame to every idle stream in one loop. Through ASGI, each of those
writes builds a message and steps three coroutines (the middlewares' send wrappers, then
uvicorn's send): at 10,000 clients that was about a third of the process's time (py-spy).
Once a chunked response has started, uvicorn's send of a body chunk does three things: nothing
if the client left, wait while the socket's buffer is full, else write the chunk. `SocketWriter`
does the same, except that it never waits: it answers False, and the fan-out queues the frame
for the stream's own task, which sends it through ASGI under the send timeout.

Each frame's chunk is encoded once for every stream of the process (`ChunkEncoder`).
Middlewares still see the response's start and everything the stream's task sends; only these
live body writes pass them by. Ours (the forwarding check, CORS) and Sentry's read the start
alone. Under any other server, protocol or framing, `for_request` answers None and the stream
writes through ASGI. (A middleware that rewrote the body, such as compression, would have to
be seen here too: the app has none.)
"""

from __future__ import annotations

from typing import Any

from starlette.types import Receive

from sse_monitor.bus.log import Frame

# uvicorn's request cycle under its httptools protocol: the attributes its send() reads
_CYCLE_MODULE = "uvicorn.protocols.http.httptools_impl"
_CYCLE_ATTRIBUTES = (
    "transport",
    "flow",
    "disconnected",
    "message_event",
    "chunked_encoding",
    "response_started",
)


class ChunkEncoder:
    """The HTTP/1.1 chunk of the frame being fanned out, encoded by the first stream that
    writes it and reused by the others."""

    __slots__ = ("_chunk", "_frame")

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._chunk = b""

    def encode(self, frame: Frame) -> bytes:
        if frame is not self._frame:
            self._chunk = b"%x\r\n%b\r\n" % (len(frame.data), frame.data)
            self._frame = frame
        return self._chunk


class SocketWriter:
    """Writes frames to one response's socket, or says it cannot now."""

    __slots__ = ("_chunks", "_cycle")

    def __init__(self, cycle: Any, chunks: ChunkEncoder) -> None:
        self._cycle = cycle
        self._chunks = chunks

    @classmethod
    def for_request(cls, receive: Receive, chunks: ChunkEncoder) -> SocketWriter | None:
        """A writer for a started, chunked response under uvicorn's httptools protocol (its
        `receive` is a method of the request cycle); None anywhere else."""
        cycle = getattr(receive, "__self__", None)
        if type(cycle).__module__ != _CYCLE_MODULE:
            return None
        if not all(hasattr(cycle, name) for name in _CYCLE_ATTRIBUTES):
            return None
        if cycle.chunked_encoding is not True or cycle.response_started is not True:
            return None
        return cls(cycle, chunks)

    def write(self, frame: Frame) -> bool:
        """True once the frame is on its way, or the client is gone; False when the socket's
        buffer is full: nothing was written."""
        cycle = self._cycle
        if cycle.disconnected:
            return True  # uvicorn's send drops it too; the stream ends on the disconnect
        if cycle.transport.is_closing():
            # The connection is going, and uvicorn will only tell the newest request on it: a
            # client that pipelined another behind this one never sees this one told. Done
            # here as uvicorn's connection_lost does it: the stream's watcher (its `receive`)
            # then gets `http.disconnect`, and the stream ends as for any client gone.
            cycle.disconnected = True
            cycle.message_event.set()
            return True
        if cycle.flow.write_paused:
            return False
        cycle.transport.write(self._chunks.encode(frame))
        return True
