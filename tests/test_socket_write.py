"""SocketWriter against the uvicorn installed: it finds the request cycle under httptools (else
the fan-out's fast path would silently fall back to ASGI), writes whole chunks a client reads
as the frames, refuses while the socket's buffer is full, and stands aside under h11."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from sse_monitor.bus.event import Event
from sse_monitor.bus.log import Frame
from sse_monitor.web.socket_write import ChunkEncoder, SocketWriter
from tests.support.servers import ThreadedServer


def frame(n: int) -> Frame:
    data = f"id: {n}\nevent: tick\ndata: {n}\n\n".encode()
    return Frame(n, str(n), Event("tick", {"n": n}), data)


class App:
    """Starts a chunked response, then writes three frames through SocketWriter when it can
    have one (else through ASGI), and says which way in a last frame."""

    def __init__(self) -> None:
        self.chunks = ChunkEncoder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
        writer = SocketWriter.for_request(receive, self.chunks)
        for n in range(3):
            if writer is not None:
                assert writer.write(frame(n))
            else:
                body = frame(n).data
                await send({"type": "http.response.body", "body": body, "more_body": True})
        way = b"socket" if writer is not None else b"asgi"
        await send({"type": "http.response.body", "body": b"data: " + way + b"\n\n"})
        await asyncio.sleep(0)


@pytest.fixture(params=["httptools", "h11"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with ThreadedServer(App(), http=request.param) as server:
        yield request.param, server.url


def test_frames_reach_the_client_whole_the_fast_way_under_httptools_only(
    served: tuple[str, str],
) -> None:
    protocol, url = served
    response = httpx.get(url, timeout=5)
    expected = b": open\n\n" + b"".join(frame(n).data for n in range(3))
    way = "socket" if protocol == "httptools" else "asgi"
    assert response.content == expected + f"data: {way}\n\n".encode()


def test_each_frame_is_encoded_once_for_every_stream() -> None:
    chunks = ChunkEncoder()
    first = chunks.encode(frame(1))
    assert first == b"%x\r\n" % len(frame(1).data) + frame(1).data + b"\r\n"
    same = frame(2)
    assert chunks.encode(same) is chunks.encode(same)


class Flow:
    write_paused = False


class Cycle:
    """The attributes SocketWriter reads, in a module of another name: never taken for
    uvicorn's."""

    transport = None
    flow = Flow()
    disconnected = False
    message_event = None
    chunked_encoding = True
    response_started = True

    async def receive(self) -> dict[str, object]:
        return {}


def test_anything_but_uvicorns_httptools_cycle_is_left_to_asgi() -> None:
    assert SocketWriter.for_request(Cycle().receive, ChunkEncoder()) is None

    async def receive() -> dict[str, object]:
        return {}

    assert SocketWriter.for_request(receive, ChunkEncoder()) is None


def test_a_full_socket_is_refused_and_a_closing_one_marks_its_request_gone() -> None:
    written: list[bytes] = []

    class Transport:
        closing = False

        def write(self, data: bytes) -> None:
            written.append(data)

        def is_closing(self) -> bool:
            return self.closing

    cycle = Cycle()
    cycle.transport = Transport()  # type: ignore[assignment]
    cycle.flow = Flow()
    cycle.message_event = asyncio.Event()  # type: ignore[attr-defined]
    writer = SocketWriter(cycle, ChunkEncoder())
    cycle.flow.write_paused = True
    assert writer.write(frame(1)) is False and written == []
    cycle.flow.write_paused = False
    assert writer.write(frame(1)) is True and len(written) == 1
    # Behind a pipelined request uvicorn marks the newer request disconnected, not this one:
    # the transport alone says the connection is going. The request is told, as uvicorn would.
    cycle.transport.closing = True  # type: ignore[attr-defined]
    assert writer.write(frame(2)) is True and len(written) == 1
    assert cycle.disconnected is True and cycle.message_event.is_set()  # type: ignore[attr-defined]
    assert writer.write(frame(3)) is True and len(written) == 1
