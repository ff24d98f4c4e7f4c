"""Load generator for bench/fanout.py: N SSE connections in one process, timing every event.

Each connection is a bare asyncio Protocol on a TCP socket (no HTTP library): it sends
`GET <path>?<query> HTTP/1.1`, reads the headers, undoes the chunked transfer encoding when there
is one (uvicorn chunks; nginx/nchan sends the body unframed) and splits SSE frames incrementally,
whatever the order of their `id:`, `event:` and `data:` lines, so one client serves every server.
For every `metrics` frame it records (client, event id, arrival time); the event's publish time
comes from the `"timestamp":"..."` field, found with a regex and parsed once per event id for all
clients, so that the client's own CPU stays small next to the server's.
Arrival is taken when the event loop hands the bytes over (`data_received`), not after a task
wakes up, so a busy client adds as little as it can to the measured latency.

Standalone it runs `--duration` seconds after its clients are connected; under the orchestrator
(`--wait-stdin`) it prints one JSON line when connected and stops at a line or EOF on stdin (so
it also stops if the orchestrator dies), `--duration` then being only an upper bound.

    python bench/load_client.py --url http://127.0.0.1:8080/events --clients 1000 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

_TIMESTAMP = re.compile(rb'"timestamp":"([^"]+)"')
_FRAME_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_HEADERS_END = b"\r\n\r\n"
CONNECT_TIMEOUT = 30.0  # seconds for one attempt: TCP connect and the response head


class Shared:
    """What all connections of this process share: publish times by event id, error counts."""

    def __init__(self) -> None:
        self.published: dict[bytes, float] = {}
        self.sizes: dict[bytes, int] = {}  # bytes of `data`, to check both servers send alike
        self.bad_frames = 0

    def publish_time(self, event_id: bytes, data: bytes | None) -> float | None:
        ts = self.published.get(event_id)
        if ts is None and data is not None:
            match = _TIMESTAMP.search(data)
            if match is None:
                self.bad_frames += 1
                return None
            ts = datetime.fromisoformat(match.group(1).decode()).timestamp()
            self.published[event_id] = ts
            self.sizes[event_id] = len(data.strip())
        return ts


class SSEConnection(asyncio.Protocol):
    """One client: HTTP/1.1 response head, chunked body, SSE frames, one sample per event."""

    def __init__(self, index: int, request: bytes, shared: Shared) -> None:
        self.index = index
        self.request = request
        self.shared = shared
        self.transport: asyncio.Transport | None = None
        self.head: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.status: int | None = None
        self.received: list[tuple[bytes, float]] = []  # (event id, arrival epoch)
        self.closed_by_peer = False
        self.stopping = False
        self._raw = bytearray()
        self._sse = bytearray()
        self._chunked = False
        self._chunk_left = 0
        self._need_crlf = False
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.stopping:
            self.closed_by_peer = True
        if not self.head.done():
            self.head.set_exception(exc or ConnectionResetError("closed before the response"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self._raw += data
        if self.status is None and not self._read_head():
            return
        self._dechunk()
        self._frames(now)

    def _read_head(self) -> bool:
        end = self._raw.find(_HEADERS_END)
        if end < 0:
            return False
        head = bytes(self._raw[:end]).decode("latin-1").split("\r\n")
        del self._raw[: end + 4]
        try:
            self.status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self.status = 0
        headers = {
            k.strip().lower(): v.strip().lower() for k, _, v in (h.partition(":") for h in head[1:])
        }
        self._chunked = "chunked" in headers.get("transfer-encoding", "")
        if not self.head.done():
            self.head.set_result(self.status)
        return True

    def _dechunk(self) -> None:
        raw = self._raw
        if not self._chunked:
            self._sse += raw
            raw.clear()
            return
        while raw and not self._done:
            if self._chunk_left:
                n = min(self._chunk_left, len(raw))
                self._sse += raw[:n]
                del raw[:n]
                self._chunk_left -= n
                if self._chunk_left:
                    return
                self._need_crlf = True
            if self._need_crlf:
                if len(raw) < 2:
                    return
                del raw[:2]
                self._need_crlf = False
            line_end = raw.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(raw[:line_end]).split(b";")[0], 16)
            del raw[: line_end + 2]
            if size == 0:
                self._done = True
            self._chunk_left = size

    def _frames(self, now: float) -> None:
        buffer = self._sse
        pos = 0
        while (match := _FRAME_END.search(buffer, pos)) is not None:
            self._frame(bytes(buffer[pos : match.start()]), now)
            pos = match.end()
        if pos:
            del buffer[:pos]

    def _frame(self, frame: bytes, now: float) -> None:
        event, event_id, data = parse_frame(frame)
        if event != b"metrics" or event_id is None:
            return
        if self.shared.publish_time(event_id, data) is not None:
            self.received.append((event_id, now))

    def close(self) -> None:
        self.stopping = True
        if self.transport is not None:
            self.transport.close()


def parse_frame(frame: bytes) -> tuple[bytes, bytes | None, bytes | None]:
    """An SSE frame's event name (default `message`), id and (last) data line."""
    event = b"message"
    event_id: bytes | None = None
    data: bytes | None = None
    for line in frame.splitlines():
        if line.startswith(b"data:"):
            data = line[5:]
        elif line.startswith(b"id:"):
            event_id = line[3:].strip()
        elif line.startswith(b"event:"):
            event = line[6:].strip()
    return event, event_id, data


def request_bytes(url: str, last_event_id: str | None = None) -> bytes:
    """The GET of a stream at `url` (its query kept: ?topics=...), resuming after an id."""
    parts = urlsplit(url)
    path = (parts.path or "/events") + (f"?{parts.query}" if parts.query else "")
    resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
        f"Cache-Control: no-cache\r\n{resume}\r\n"
    ).encode()


async def connect(
    index: int,
    host: str,
    port: int,
    request: bytes,
    shared: Shared,
    errors: Counter[str],
    *,
    attempts: int = 3,
    connection: Callable[[int, bytes, Shared], SSEConnection] = SSEConnection,
) -> SSEConnection | None:
    """One client, retried a few times; every failed attempt is counted by its cause.
    `connection` makes each attempt's protocol (a subclass of SSEConnection)."""
    loop = asyncio.get_running_loop()
    for attempt in range(attempts):
        conn = connection(index, request, shared)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(lambda c=conn: c, host, port)
                status = await conn.head
            if status == 200:
                return conn
            errors[f"HTTP {status}"] += 1
        except (OSError, TimeoutError) as exc:
            errors[type(exc).__name__] += 1
        conn.close()
        if attempt + 1 < attempts:
            await asyncio.sleep(0.2 * (attempt + 1))
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    request = request_bytes(args.url)
    shared = Shared()
    errors: Counter[str] = Counter()
    conns: list[SSEConnection] = []
    failed: list[int] = []
    started = time.time()
    first, last = args.first_index, args.first_index + args.clients
    for batch_start in range(first, last, args.batch):
        batch = range(batch_start, min(last, batch_start + args.batch))
        results = await asyncio.gather(
            *(connect(i, host, port, request, shared, errors) for i in batch)
        )
        for i, conn in zip(batch, results, strict=True):
            if conn is None:
                failed.append(i)
            else:
                conns.append(conn)
    connected_at = time.time()
    cpu_at_ready = time.process_time()
    ready = {"ready": True, "connected": len(conns), "failed": len(failed), "at": connected_at}
    if args.wait_stdin:
        print(json.dumps(ready), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_stdin_line(), args.duration)
    else:
        print(json.dumps(ready), file=sys.stderr, flush=True)
        await asyncio.sleep(args.duration)
    stopped_at = time.time()
    cpu_seconds = time.process_time() - cpu_at_ready
    for conn in conns:
        conn.close()
    return {
        "url": args.url,
        "first_index": first,
        "clients": args.clients,
        "connected": len(conns),
        "failed": failed,
        "connect_errors": dict(errors),
        "closed_by_server": sum(conn.closed_by_peer for conn in conns),
        "bad_frames": shared.bad_frames,
        "started": started,
        "connected_at": connected_at,
        "stopped_at": stopped_at,
        "cpu_seconds": round(cpu_seconds, 3),  # this process, from connected to stopped
        "published": {eid.decode(): ts for eid, ts in shared.published.items()},
        "data_bytes": {eid.decode(): size for eid, size in shared.sizes.items()},
        "received": [
            {
                "client": conn.index,
                "ids": [eid.decode() for eid, _ in conn.received],
                "arrivals": [round(at, 6) for _, at in conn.received],
                "closed_by_server": conn.closed_by_peer,
            }
            for conn in conns
        ],
    }


async def _stdin_line() -> None:
    """Wait for a line or EOF on stdin, read in a daemon thread that never blocks the exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def read() -> None:
        sys.stdin.readline()
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    threading.Thread(target=read, name="stdin", daemon=True).start()
    await done


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the SSE endpoint, e.g. http://h:p/events")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--first-index", type=int, default=0, help="index of the first client")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds after connecting")
    parser.add_argument("--batch", type=int, default=250, help="connections opened at once")
    parser.add_argument("--wait-stdin", action="store_true", help="stop on a line/EOF on stdin")
    parser.add_argument("--out", help="write the JSON results here (default: stdout)")
    args = parser.parse_args()
    _raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        results = asyncio.run(run(args))
    else:
        results = uvloop.run(run(args))
    text = json.dumps(results, separators=(",", ":"))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
