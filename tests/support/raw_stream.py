"""An SSE client on a raw socket with a small receive window, reading only when a test says so.

A test of back-pressure needs a client whose buffers fill within a few frames and which stops
reading and resumes at will; an HTTP library reads ahead on its own. The HTTP framing is h11's
(either of uvicorn's protocols may answer); the frames are read strictly: each block must be one
whole event (one id, one event name, one line of JSON data) or comments, so a frame cut short or
two frames interleaved fail the test instead of being forgiven as a browser would.
"""

from __future__ import annotations

import fcntl
import json
import select
import socket
import struct
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import h11

READ_SECONDS = 0.05  # the longest a read waits before the caller's condition is checked again
FIELDS = ("id", "event", "data")


def small_window_socket(port: int) -> socket.socket:
    """A loopback connection with a small receive window and small segments: the server's kernel
    sizes its send buffer small too (it scales with the segment size), so the buffers between
    the server and a client that stops reading fill within a few frames."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.connect(("127.0.0.1", port))
    return sock


@dataclass(frozen=True, slots=True)
class WireFrame:
    """One SSE event as it arrived."""

    id: str
    event: str
    data: Any  # the JSON data, parsed
    arrived: float  # time.monotonic()


def parse_block(block: bytes, arrived: float) -> WireFrame | None:
    """One block (the bytes between blank lines): an event, or None for comments and `retry:`.

    Anything else (a field twice, a field missing, an unknown field, data that is not one JSON
    value) is a frame that was cut or mixed with another, and fails the test.
    """
    fields: dict[str, str] = {}
    for line in block.decode("utf-8").split("\n"):
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(": ")
        assert colon and name in (*FIELDS, "retry"), f"not one SSE frame: {block!r}"
        assert name not in fields, f"{name} twice in one frame: {block!r}"
        fields[name] = value
    fields.pop("retry", None)
    if not fields:
        return None
    assert tuple(sorted(fields)) == tuple(sorted(FIELDS)), f"not one SSE event: {block!r}"
    return WireFrame(fields["id"], fields["event"], json.loads(fields["data"]), arrived)


class RawStream:
    """One GET on a small-window socket; frames are read into `frames` only inside read_until."""

    def __init__(self, port: int, target: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.sock = small_window_socket(port)
        self._http = h11.Connection(h11.CLIENT)
        request = h11.Request(method="GET", target=target, headers=[("host", "test"), *headers])
        self.sock.sendall(self._http.send(request) + self._http.send(h11.EndOfMessage()))
        self.response: h11.Response | None = None
        self.frames: list[WireFrame] = []
        self.ended = False
        self._body = b""

    def of(self, event: str) -> list[WireFrame]:
        return [frame for frame in self.frames if frame.event == event]

    def read_until(self, done: Callable[[], Any], timeout: float, what: str) -> Any:
        """Read until done() is truthy (checked between reads), and return its value."""
        deadline = time.monotonic() + timeout
        while True:
            result = done()
            if result:
                return result
            assert not self.ended, f"the stream ended before {what}"
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self._read(READ_SECONDS)

    def unread_bytes(self) -> int:
        """What has arrived in this socket's receive buffer and was not read yet."""
        answer = fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        return struct.unpack("i", answer)[0]

    def close(self) -> None:
        self.sock.close()

    def _read(self, timeout: float) -> None:
        if not select.select([self.sock], [], [], timeout)[0]:
            return
        try:
            self._http.receive_data(self.sock.recv(65536))
            while (event := self._http.next_event()) is not h11.NEED_DATA:
                if isinstance(event, h11.Response):
                    self.response = event
                elif isinstance(event, h11.Data):
                    self._feed(bytes(event.data))
                else:  # the end of the response, or of the connection
                    self.ended = True
                    return
        except (ConnectionResetError, h11.RemoteProtocolError):
            self.ended = True

    def _feed(self, data: bytes) -> None:
        self._body += data
        arrived = time.monotonic()
        *blocks, self._body = self._body.split(b"\n\n")
        for block in blocks:
            frame = parse_block(block, arrived)
            if frame is not None:
                self.frames.append(frame)
