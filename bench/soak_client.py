"""Load client for bench/soak.py: SSE clients that come and go, resume, and a few that get stuck.

One process holds many clients (bare asyncio sockets: load_client.py's SSEConnection, with its
own frame handling). After connecting them all, it makes one client leave every 1/rate seconds;
each comes back after `AWAY_SECONDS` with `Last-Event-ID` set to the id of the last event it got
(any event: the gateway's ids are one sequence over every event). `--stuck` clients read for a
moment, then stop reading (a full socket, as a frozen browser tab) for `--stuck-hold` seconds,
then read again and expect the end of the stream: the gateway should have dropped them after its
send timeout.

Each resumed connection is checked against the truth, the gateway's durable history, which this
process pages through itself (`GET /api/events?after=...`, every `TRUTH_SECONDS`): the durable
events it received must be exactly those published after its Last-Event-ID and up to the last
id it received, once each and in order. A durable event that did not reach a connection before
it closed is not lost yet: the next connection resumes from the last id received and gets it.

It prints one JSON line of running totals every `--report-every` seconds (a latency histogram of
the `metrics` events since the last line: 1 ms buckets, publish timestamp to arrival) and a
last one, with `"final": true`, once stopped by a line or EOF on stdin (or `--duration`).

    python bench/soak_client.py --base-url http://127.0.0.1:8080 --clients 500 --connect-rate 5
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import random
import re
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from load_client import (
    CONNECT_TIMEOUT,
    Shared,
    SSEConnection,
    _raise_fd_limit,
    _stdin_line,
    parse_frame,
)

DURABLE = frozenset({b"session_event", b"upstream", b"container_event", b"alert"})
AWAY_SECONDS = (1.0, 10.0)  # a client that left comes back after this long (uniform)
TRUTH_SECONDS = 2.0  # how often the durable history is read
STUCK_READ_SECONDS = 2.0  # a stuck client reads this long before it stops
STUCK_EOF_SECONDS = 15.0  # once reading again, how long it waits for the end of the stream
STUCK_RCVBUF = 4096  # a small receive buffer, so that the gateway's side fills sooner
# A stuck client announces a small segment: over loopback (MTU 64 KiB) the kernel
# sizes the gateway's send buffer from the segment size, to megabytes, which a stream of a few
# hundred bytes a second would take most of an hour to fill before a write could block.
STUCK_MSS = 536  # the smallest the kernel takes (as tests/test_gateway.py does)
EXAMPLES = 10  # failed checks kept in full, for the report
_REASON = re.compile(rb'"reason":"([^"]*)"')


def seq_of(event_id: bytes) -> int | None:
    _, _, seq = event_id.rpartition(b"-")
    return int(seq) if seq.isdigit() else None


@dataclass
class Totals:
    """Running totals of this process, reported as they are."""

    connects: int = 0
    resumes: int = 0
    leaves: int = 0
    connect_failures: Counter[str] = field(default_factory=Counter)
    server_closed: int = 0  # streams of reading clients the gateway ended
    checked: int = 0  # resumed connections checked against the history
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0  # durable ids the history never had
    unverifiable: int = 0  # the history had moved past them before it was read
    reset_too_old: int = 0  # Last-Event-ID fell out of the history: allowed, counted
    reset_other: int = 0  # any other reset of a resume: a failure
    stuck_episodes: int = 0
    stuck_dropped: int = 0
    stuck_not_dropped: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


class SoakConnection(SSEConnection):
    """One connection: the ids it got, its durable events by seq, latency of `metrics`."""

    def __init__(
        self, index: int, request: bytes, shared: Shared, soak: Soak, *, stuck: bool = False
    ) -> None:
        super().__init__(index, request, shared)
        self.stuck = stuck  # its frames arrive late on purpose: not timed
        self.soak = soak
        self.last_id: bytes | None = None
        self.last_seq = 0
        self.durable: list[int] = []
        self.resets: list[str] = []
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.opened_at = time.time()  # a `metrics` published before is replayed state: no latency

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.ended.done():
            self.ended.set_result(None)
        self.soak.ended(self)

    def _frame(self, frame: bytes, now: float) -> None:
        event, event_id, data = parse_frame(frame)
        seq = seq_of(event_id) if event_id else None
        if seq is None:
            return
        self.last_id, self.last_seq = event_id, seq
        self.soak.max_seq = max(self.soak.max_seq, seq)
        if event in DURABLE:
            self.durable.append(seq)
        elif event == b"metrics":
            published = self.shared.publish_time(event_id, data)  # type: ignore[arg-type]
            live = published is not None and published >= self.opened_at
            if live and not self.stuck:
                self.soak.latency_ms[int((now - published) * 1000)] += 1
        elif event == b"reset":
            match = _REASON.search(data or b"")
            self.resets.append(match.group(1).decode() if match else "?")


@dataclass
class Client:
    index: int
    stuck: bool = False
    last_id: bytes | None = None  # of the last event of any earlier connection
    conn: SoakConnection | None = None
    resumed_from: bytes | None = None  # the Last-Event-ID its current connection sent


@dataclass
class Record:
    """A resumed connection, to check once the history is read up to its last id."""

    client: int
    after: int
    through: int
    durable: list[int]


class Truth:
    """The gateway's durable history, paged from `/api/events` as it grows."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.boot: str | None = None
        self.seqs: list[int] = []
        self.last = 0
        self.valid_after = 0  # seqs before this may be missing (the history had moved on)
        self.complete_through = 0  # every durable event up to this seq is in `seqs`

    async def refresh(self, http: httpx.AsyncClient, marker: int) -> None:
        """Read what is new; afterwards the history is known up to `marker` (seen before)."""
        if self.boot is None:
            self.boot = (await http.get(f"{self.base_url}/api/events?limit=1")).json()["boot"]
        more = True
        while more:
            url = f"{self.base_url}/api/events?after={self.boot}-{self.last}&limit=1000"
            body = (await http.get(url)).json()
            seqs = [seq_of(e["id"].encode()) or 0 for e in body["events"]]
            if body["reset"] is not None:  # fell out of the history: start again from its start
                self.valid_after = min(seqs, default=self.last)
                seqs = [s for s in seqs if s > self.last]
            self.seqs += seqs
            self.last = max(self.last, *seqs) if seqs else self.last
            more = bool(body["more"]) and body["reset"] is None
        self.complete_through = max(self.complete_through, marker)

    def between(self, after: int, through: int) -> list[int]:
        return self.seqs[
            bisect.bisect_right(self.seqs, after) : bisect.bisect_right(self.seqs, through)
        ]


class Soak:
    """The clients of this process, their churn, and the checks of their resumes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        url = httpx.URL(args.base_url)
        self.host, self.port = url.host, url.port or 80
        self.shared = Shared()
        self.totals = Totals()
        self.truth = Truth(args.base_url)
        self.latency_ms: Counter[int] = Counter()
        self.max_seq = 0
        self.running = True
        self.stopped = asyncio.Event()
        self.pending: list[Record] = []
        first = args.first_index
        self.clients = [
            Client(first + i, stuck=i < args.stuck) for i in range(args.clients + args.stuck)
        ]
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def request(self, last_id: bytes | None) -> bytes:
        resume = f"Last-Event-ID: {last_id.decode()}\r\n" if last_id else ""
        return (
            f"GET /events HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept: text/event-stream\r\nCache-Control: no-cache\r\n{resume}\r\n"
        ).encode()

    async def open(self, client: Client) -> SoakConnection | None:
        """One connection of a client, resuming from its last id; None if it failed."""
        loop = asyncio.get_running_loop()
        request = self.request(client.last_id)
        conn = SoakConnection(client.index, request, self.shared, self, stuck=client.stuck)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if client.stuck:  # before connecting, so that the advertised window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STUCK_RCVBUF)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, STUCK_MSS)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.sock_connect(sock, (self.host, self.port))
                await loop.create_connection(lambda: conn, sock=sock)
                status = await conn.head
        except (OSError, TimeoutError) as exc:
            sock.close()
            self.totals.connect_failures[type(exc).__name__] += 1
            conn.close()
            return None
        if status != 200:
            self.totals.connect_failures[f"HTTP {status}"] += 1
            conn.close()
            return None
        self.totals.connects += 1
        self.totals.resumes += client.last_id is not None
        client.conn, client.resumed_from = conn, client.last_id
        return conn

    def ended(self, conn: SoakConnection) -> None:
        """A connection closed, by either side: remember its last id, queue its check."""
        client = self.clients[conn.index - self.args.first_index]
        if client.conn is not conn:
            return
        client.conn = None
        if conn.closed_by_peer and not client.stuck:
            self.totals.server_closed += 1
            if self.running:
                self.come_back_later(client)
        self.finish(client, conn)

    def finish(self, client: Client, conn: SoakConnection) -> None:
        if conn.last_id is not None:
            client.last_id = conn.last_id
        if client.stuck or client.resumed_from is None:
            return
        if conn.resets:
            if all(reason == "too_old" for reason in conn.resets):
                self.totals.reset_too_old += 1
            else:
                self.totals.reset_other += 1
                self.example("reset", client, {"reasons": conn.resets})
            return
        after = seq_of(client.resumed_from) or 0
        self.pending.append(Record(client.index, after, conn.last_seq, conn.durable))

    def come_back_later(self, client: Client) -> None:
        away = random.uniform(*AWAY_SECONDS)
        asyncio.get_running_loop().call_later(away, lambda: self.spawn(self.reconnect(client)))

    async def reconnect(self, client: Client) -> None:
        if self.running and client.conn is None and await self.open(client) is None:
            self.come_back_later(client)  # refused or failed: counted, tried again

    def check(self) -> None:
        """Check every queued resume the history now covers."""
        waiting = []
        for record in self.pending:
            if record.through > self.truth.complete_through:
                waiting.append(record)
                continue
            if record.after < self.truth.valid_after:
                self.totals.unverifiable += 1
                continue
            self.compare(record)
        self.pending = waiting

    def compare(self, record: Record) -> None:
        totals = self.totals
        expected = self.truth.between(record.after, record.through)
        got = record.durable
        unique = set(got)
        lost = [seq for seq in expected if seq not in unique]
        extra = sorted(unique - set(expected))
        duplicated = len(got) - len(unique)
        disordered = got != sorted(got)
        totals.checked += 1
        totals.delivered += len(unique & set(expected))
        totals.lost += len(lost)
        totals.duplicated += duplicated
        totals.out_of_order += disordered
        totals.unexpected += len(extra)
        if lost or extra or duplicated or disordered:
            detail = {"after": record.after, "through": record.through, "lost": lost[:20]}
            detail.update(unexpected=extra[:20], received=got[:40], expected=expected[:40])
            self.example("durable", self.clients[record.client - self.args.first_index], detail)

    def example(self, kind: str, client: Client, detail: dict[str, Any]) -> None:
        if len(self.totals.examples) < EXAMPLES:
            self.totals.examples.append({"kind": kind, "client": client.index, **detail})

    # The loops

    async def ramp(self) -> None:
        normal = [c for c in self.clients if not c.stuck]
        for start in range(0, len(normal), self.args.batch):
            batch = normal[start : start + self.args.batch]
            results = await asyncio.gather(*(self.open(c) for c in batch))
            for client, conn in zip(batch, results, strict=True):
                if conn is None:
                    self.come_back_later(client)
        for client in self.clients:
            if client.stuck:
                self.spawn(self.stuck_cycle(client))

    async def churn(self) -> None:
        """One reading client leaves every 1/rate s (fixed rate); it comes back later."""
        if self.args.connect_rate <= 0:
            return
        period = 1.0 / self.args.connect_rate
        next_at = time.monotonic()
        while self.running:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            connected = [c for c in self.clients if c.conn is not None and not c.stuck]
            if not connected or not self.running:
                continue
            client = random.choice(connected)
            conn = client.conn
            assert conn is not None
            client.conn = None
            conn.close()
            self.totals.leaves += 1
            self.finish(client, conn)
            self.come_back_later(client)

    async def stuck_cycle(self, client: Client) -> None:
        """Read a moment, stop reading, hold, read again: the stream should have ended."""
        while self.running:
            conn = await self.open(client)
            if conn is None:
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(STUCK_READ_SECONDS)
            if conn.transport is None or conn.ended.done():
                continue
            conn.transport.pause_reading()
            self.totals.stuck_episodes += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), self.args.stuck_hold)
            if not self.running:
                self.totals.stuck_episodes -= 1  # cut short by the end of the run: not judged
                conn.close()
                return
            conn.transport.resume_reading()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(conn.ended), STUCK_EOF_SECONDS)
            if conn.closed_by_peer:
                self.totals.stuck_dropped += 1
            elif not self.running:
                self.totals.stuck_episodes -= 1  # the run ended first: not judged
            else:
                self.totals.stuck_not_dropped += 1
                self.example("stuck_not_dropped", client, {"held_s": self.args.stuck_hold})
            client.conn = None
            conn.close()

    async def follow_truth(self, http: httpx.AsyncClient) -> None:
        while self.running:
            marker = self.max_seq
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                await self.truth.refresh(http, marker)
                self.check()
            await asyncio.sleep(TRUTH_SECONDS)

    async def report(self) -> None:
        while self.running:
            await asyncio.sleep(self.args.report_every)
            self.print_line(final=False)

    def print_line(self, *, final: bool) -> None:
        totals = self.totals
        line = {
            "final": final,
            "at": time.time(),
            "cpu_seconds": round(time.process_time(), 3),
            "connected": sum(1 for c in self.clients if c.conn is not None and not c.stuck),
            "stuck_open": sum(1 for c in self.clients if c.conn is not None and c.stuck),
            "latency_ms": dict(self.latency_ms),
            "pending_checks": len(self.pending),
            **{k: v for k, v in vars(totals).items() if k != "connect_failures"},
            "connect_failures": dict(totals.connect_failures),
        }
        self.latency_ms = Counter()
        print(json.dumps(line, separators=(",", ":")), flush=True)

    async def stop(self, http: httpx.AsyncClient) -> None:
        """Stop churning, queue the open connections' checks, read the history once more."""
        self.running = False
        self.stopped.set()
        for client in self.clients:
            conn = client.conn
            if conn is not None:
                client.conn = None
                conn.close()
                self.finish(client, conn)
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            await self.truth.refresh(http, self.max_seq)
        self.check()
        self.totals.unverifiable += len(self.pending)  # the history could not be read
        self.pending = []


async def run(args: argparse.Namespace) -> None:
    soak = Soak(args)
    async with httpx.AsyncClient(timeout=10) as http:
        await soak.ramp()
        print(json.dumps({"ready": True, "connected": soak.totals.connects}), flush=True)
        for loop in (soak.churn(), soak.follow_truth(http), soak.report()):
            soak.spawn(loop)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_stdin_line(), args.duration)
        await soak.stop(http)
        for task in list(soak.tasks):
            task.cancel()
        soak.print_line(final=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the gateway, e.g. http://h:p")
    parser.add_argument("--clients", type=int, required=True, help="reading clients")
    parser.add_argument("--first-index", type=int, default=0)
    parser.add_argument("--connect-rate", type=float, default=20.0, help="leaves (and returns) /s")
    parser.add_argument("--stuck", type=int, default=0, help="clients that stop reading")
    parser.add_argument("--stuck-hold", type=float, default=90.0, help="seconds not reading")
    parser.add_argument("--duration", type=float, default=3600.0, help="upper bound, seconds")
    parser.add_argument("--report-every", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=100, help="connections opened at once")
    args = parser.parse_args()
    _raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
