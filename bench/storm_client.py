"""Load client for bench/cluster.py's reconnect storm: SSE clients that come back as browsers do.

One process holds many clients (bare asyncio sockets: load_client.py's SSEConnection). Each
reads the stream, keeps the id of the last event it got (any event: ids are one sequence) and
every `session_event`'s `previous_count` and `current_count`. When the server ends its stream
(its node was killed), it does what an EventSource does: waits the stream's `retry:`, then
connects again with `Last-Event-ID` set to that id, and again after each failed attempt. Each
connection records when it was opened, when its first frame came (the `retry:` line the gateway
writes first: the client is resumed then) and when it ended.

It prints one JSON line once its clients are connected, and on a line or EOF on stdin (or after
`--duration`) writes every client's record to `--out` and exits.

    python bench/storm_client.py --url http://127.0.0.1:8080/events --clients 1000 --out r.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from load_client import (
    Shared,
    SSEConnection,
    _raise_fd_limit,
    _stdin_line,
    connect,
    parse_frame,
    request_bytes,
)

_COUNTS = re.compile(rb'"current_count":(-?\d+),"previous_count":(-?\d+)')
_RETRY = re.compile(rb"^retry: ?(\d+)$", re.M)
DEFAULT_RETRY_MS = 3000  # an EventSource's own, until the stream says otherwise


@dataclass
class Client:
    """One simulated browser tab: what it has seen over all of its connections."""

    index: int
    retry_ms: int = DEFAULT_RETRY_MS
    last_id: str | None = None
    sessions: list[tuple[str, int, int]] = field(default_factory=list)  # (id, previous, current)
    resets: list[str] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)
    failed_attempts: int = 0


class StormConnection(SSEConnection):
    """One connection of a Client: its frames go to the client's record."""

    def __init__(self, index: int, request: bytes, shared: Shared, client: Client) -> None:
        super().__init__(index, request, shared)
        self.client = client
        self.record: dict[str, Any] = {
            "opened": time.time(),
            "resumed_from": client.last_id,
            "first_frame": None,
            "last_frame": None,
            "closed": None,
            "by_server": False,
            "frames": 0,
        }
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.record["closed"] = time.time()
        self.record["by_server"] = self.closed_by_peer
        if not self.ended.done():
            self.ended.set_result(None)

    def _frame(self, frame: bytes, now: float) -> None:
        record, client = self.record, self.client
        if record["first_frame"] is None:
            record["first_frame"] = now
            if match := _RETRY.search(frame):
                client.retry_ms = int(match.group(1))
        record["frames"] += 1
        record["last_frame"] = now
        event, event_id, data = parse_frame(frame)
        if event_id:
            client.last_id = event_id.decode()
        if event == b"session_event" and event_id and data:
            if match := _COUNTS.search(data):
                current, previous = int(match.group(1)), int(match.group(2))
                client.sessions.append((event_id.decode(), previous, current))
        elif event == b"reset":
            client.resets.append((data or b"").decode(errors="replace"))


class Storm:
    """The clients of this process: connected once, then brought back whenever cut."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url
        parts = urlsplit(args.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.shared = Shared()
        self.errors: Counter[str] = Counter()
        self.clients = [Client(args.first_index + i) for i in range(args.clients)]
        self.running = True
        self.jitter = args.jitter
        self.tasks: set[asyncio.Task[None]] = set()

    async def connect(self, client: Client, attempts: int) -> StormConnection | None:
        def connection(index: int, request: bytes, shared: Shared) -> StormConnection:
            return StormConnection(index, request, shared, client)

        request = request_bytes(self.url, client.last_id)
        conn = await connect(
            client.index,
            self.host,
            self.port,
            request,
            self.shared,
            self.errors,
            attempts=attempts,
            connection=connection,
        )
        if conn is None:
            client.failed_attempts += attempts
            return None
        assert isinstance(conn, StormConnection)
        client.connections.append(conn.record)
        task = asyncio.get_running_loop().create_task(self.follow(client, conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return conn

    async def follow(self, client: Client, conn: StormConnection) -> None:
        """Once the stream ends, come back after `retry:` (and after each failed attempt), plus
        up to `jitter` s at random (0 by default: an EventSource adds none)."""
        await conn.ended
        while self.running:
            await asyncio.sleep(client.retry_ms / 1000 + random.uniform(0, self.jitter))
            if not self.running or await self.connect(client, attempts=1) is not None:
                return

    async def ramp(self, batch: int) -> int:
        """Connect every client, `batch` at a time (3 attempts each); how many did."""
        for start in range(0, len(self.clients), batch):
            group = self.clients[start : start + batch]
            await asyncio.gather(*(self.connect(c, attempts=3) for c in group))
        return sum(1 for c in self.clients if c.connections)

    def results(self) -> dict[str, Any]:
        return {
            "connect_errors": dict(self.errors),
            "bad_frames": self.shared.bad_frames,
            "clients": [
                {
                    "index": c.index,
                    "retry_ms": c.retry_ms,
                    "sessions": c.sessions,
                    "resets": c.resets,
                    "connections": c.connections,
                    "failed_attempts": c.failed_attempts,
                }
                for c in self.clients
            ],
        }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    storm = Storm(args)
    connected = await storm.ramp(args.batch)
    ready = {"ready": True, "connected": connected, "failed": len(storm.clients) - connected}
    print(json.dumps({**ready, "at": time.time()}), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_stdin_line(), args.duration)
    storm.running = False
    for task in list(storm.tasks):
        task.cancel()
    for client in storm.clients:
        for record in client.connections:
            record["open_at_end"] = record["closed"] is None
    return storm.results()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the SSE endpoint, e.g. http://h:p/events")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--first-index", type=int, default=0, help="index of the first client")
    parser.add_argument("--duration", type=float, default=3600.0, help="upper bound, seconds")
    parser.add_argument("--batch", type=int, default=250, help="connections opened at once")
    parser.add_argument("--jitter", type=float, default=0.0, help="s added at random to retry:")
    parser.add_argument("--out", required=True, help="write the JSON results here")
    args = parser.parse_args()
    _raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        results = asyncio.run(run(args))
    else:
        results = uvloop.run(run(args))
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(results, out, separators=(",", ":"))


if __name__ == "__main__":
    main()
