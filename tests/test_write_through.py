"""Write-through under real uvicorn: frames written from the publisher's loop, whole and in order.

An idle stream takes each frame straight onto its socket: StreamResponse.write_now steps
uvicorn's send() by hand and relies on where it suspends (it writes at once, or, with the socket's
buffers full, waits before writing anything; then the frame is queued and the stream's own task
sends it under the send timeout). The fan-out's side of that has a unit test with a fake writer;
this is the server's side, end to end: a gateway process under each of uvicorn's HTTP protocols
and each middleware the app can wrap around `send` (none; CORS, for an allowed Origin; Sentry's
ASGI middleware), fed by the simulated KATO pushing one durable `session_event` per session
created through its HTTP API.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sse_monitor.simulator.state import SimulatedKato
from tests.support.gateway import UvicornGateway
from tests.support.http import tls
from tests.support.kato import running_kato
from tests.support.raw_stream import RawStream, WireFrame
from tests.support.servers import ThreadedServer
from tests.support.waiting import wait_until

ORIGIN = "https://ops.example.com"
# Long beside a resumed client's stall (it reads again once a frame has waited 0.5 s: about
# 0.6 s), short for a stuck client's wait.
SEND_TIMEOUT = 3.0
DURABLE = ("session_event", "upstream", "container_event", "alert")
GATEWAY_ENV = {
    "SSE_MONITOR_POLL_INTERVAL": "0.2",
    "SSE_MONITOR_KATO_TIMEOUT": "0.19",
    "SSE_MONITOR_SEND_TIMEOUT": str(SEND_TIMEOUT),
    # Room for every durable frame a stalled client misses: closed for overflow, it would
    # resume from the history on another connection, which is not what is tested here.
    "SSE_MONITOR_CLIENT_BUFFER": "20000",
    "SSE_MONITOR_HISTORY": "20000",
}


@dataclass
class Served:
    """A gateway under one protocol and one wrapper, and what a client of it sends."""

    gateway: UvicornGateway
    wrapper: str
    headers: list[tuple[str, str]]

    def get(self, path: str, **params: object) -> Any:
        url = f"{self.gateway.url}{path}"
        response = httpx.get(url, params=params, timeout=5, verify=tls())  # type: ignore[arg-type]
        response.raise_for_status()
        return response.json()

    def counter(self, name: str) -> float:
        """One unlabelled counter from GET /metrics."""
        text = httpx.get(f"{self.gateway.url}/metrics", timeout=5, verify=tls()).text
        line = next(line for line in text.splitlines() if line.startswith(f"{name} "))
        return float(line.split()[1])

    def streams(self) -> list[dict[str, Any]]:
        return self.get("/api/streams")["streams"]

    def history_after(self, event_id: str) -> list[dict[str, Any]]:
        """Every durable event the gateway recorded after that id, oldest first."""
        events: list[dict[str, Any]] = []
        while True:
            page = self.get("/api/events", after=event_id, limit=1000)
            assert page["reset"] is None, page
            events += page["events"]
            if not page["more"]:
                return events
            event_id = events[-1]["id"]


@contextlib.contextmanager
def sessions_created(kato_url: str) -> Iterator[None]:
    """KATO sessions created one after another through the simulator's HTTP API, in a thread,
    while the block runs; KATO pushes each, and the gateway publishes one durable session_event."""
    stopping = threading.Event()
    errors: list[Exception] = []

    def create() -> None:
        with httpx.Client(base_url=kato_url, timeout=5, verify=tls()) as client:
            while not stopping.is_set():
                try:
                    client.post("/sessions", json={"node_id": "write-through"}).raise_for_status()
                except Exception as error:  # raised in the test, below
                    errors.append(error)
                    return

    thread = threading.Thread(target=create, name="sessions-created", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        thread.join(10)
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def push_kato() -> Iterator[str]:
    """A simulated KATO in Redis session mode (it pushes each session), with health issues long
    enough that each `metrics` frame is about 20 kB: a client that stops reading stalls within
    a second or two."""
    state = SimulatedKato(session_backend="redis")
    state.set_health_issues([f"issue {n} " + "x" * 480 for n in range(40)])
    with running_kato(state) as kato:
        yield kato.url


@pytest.fixture(scope="module")
def sentry_dsn() -> Iterator[str]:
    """A DSN naming a local server that takes whatever sentry-sdk posts, and ignores it."""
    pytest.importorskip("sentry_sdk", reason="sentry-sdk is missing: pip install '.[sentry]'")

    async def ignore(request: Request) -> Response:
        await request.body()
        return Response('{"id": "0"}', media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", ignore, methods=["POST"])])
    with ThreadedServer(app) as server:
        yield f"http://publickey@127.0.0.1:{server.port}/1"


@pytest.fixture(
    scope="module",
    params=list(itertools.product(("h11", "httptools"), ("none", "cors", "sentry"))),
    ids=lambda param: "-".join(param),
)
def served(request: pytest.FixtureRequest, push_kato: str) -> Iterator[Served]:
    http, wrapper = request.param
    env, headers = dict(GATEWAY_ENV), []
    if wrapper == "cors":
        env["SSE_MONITOR_CORS_ORIGINS"] = ORIGIN
        headers.append(("origin", ORIGIN))
    elif wrapper == "sentry":
        env["SENTRY_DSN"] = request.getfixturevalue("sentry_dsn")
    with UvicornGateway(push_kato, http, env) as gateway:
        if wrapper == "sentry":
            assert gateway.count("sentry.started") == 1, gateway.log()
        wait_until(lambda: push_state(gateway) == "live", what="the push socket to be live")
        yield Served(gateway, wrapper, headers)


def push_state(gateway: UvicornGateway) -> str:
    """Whether KATO's pushes reach the gateway: until they do, sessions arrive by poll, several
    to one session_event."""
    snapshot = httpx.get(f"{gateway.url}/api/snapshot", timeout=5, verify=tls()).json()
    return snapshot["sessions"]["push"]["state"]


def sequence(event_id: str) -> int:
    """The order of an id as the gateway writes them today (`<boot>-<seq>`, one boot here)."""
    return int(event_id.rsplit("-", 1)[1])


def open_stream(served: Served, target: str, *headers: tuple[str, str]) -> RawStream:
    """A raw stream, its response head read and checked (CORS: the allowed origin granted)."""
    stream = RawStream(served.gateway.port, target, [*served.headers, *headers])
    response = stream.read_until(lambda: stream.response, 10, "the response head")
    assert response.status_code == 200
    granted = dict(response.headers).get(b"access-control-allow-origin")
    assert granted == (ORIGIN.encode() if served.wrapper == "cors" else None)
    return stream


def newest_durable_id(served: Served, kato_url: str) -> str:
    """A durable event of this gateway's, caused for the purpose: one KATO session."""
    httpx.post(
        f"{kato_url}/sessions", json={"node_id": "anchor"}, timeout=5, verify=tls()
    ).raise_for_status()
    history = wait_until(lambda: served.get("/api/events")["events"], what="a durable event")
    return history[-1]["id"]


def stalled(served: Served) -> dict[str, Any] | None:
    """The stream, while frames wait behind a send its client does not take: queued, and old."""
    rows = served.streams()
    assert len(rows) == 1, rows
    row = rows[0]
    return row if row["pending_frames"] >= 10 and row["lag_seconds"] >= 0.5 else None


def as_recorded(frames: list[WireFrame]) -> list[dict[str, Any]]:
    return [{"id": frame.id, "event": frame.event, "data": frame.data} for frame in frames]


def test_a_client_that_stops_reading_gets_every_frame_once_whole_and_in_order(
    served: Served, push_kato: str
) -> None:
    gateway = served.gateway
    ended_before = gateway.count("stream.dropped") + gateway.count("stream.closed")
    # Resuming after a durable event of its own: every durable event after it is expected.
    anchor = newest_durable_id(served, push_kato)
    written_through = served.counter("sse_monitor_frames_written_through_total")
    refused = served.counter("sse_monitor_write_through_refused_total")
    stream = open_stream(served, "/events", ("last-event-id", anchor))
    try:
        with sessions_created(push_kato):
            # Reading: the stream is idle between frames, so they are written through.
            stream.read_until(lambda: len(stream.of("session_event")) >= 20, 20, "live frames")
            wait_until(
                lambda: (
                    served.counter("sse_monitor_frames_written_through_total") > written_through
                ),
                10,
                "a frame written through",
            )
            # Not reading: the buffers fill, and frames queue behind a send that waits.
            row = wait_until(lambda: stalled(served), 20, "the stream to stall")
            assert stream.unread_bytes() > 0
            # the fan-out found the socket full and queued the frame instead
            assert served.counter("sse_monitor_write_through_refused_total") > refused
            print(f"stalled: {row}, {stream.unread_bytes()} bytes unread by the client")
            # Reading again: the queue drains, and frames are written through again.
            expected = len(stream.of("session_event")) + row["pending_frames"] + 20
            stream.read_until(
                lambda: len(stream.of("session_event")) >= expected,
                20,
                "the queued frames and newer ones",
            )
        recorded = served.history_after(anchor)
        last = sequence(recorded[-1]["id"])
        stream.read_until(
            lambda: stream.frames and sequence(stream.frames[-1].id) >= last,
            20,
            "the last durable event the gateway recorded",
        )
    finally:
        stream.close()
    ids = [sequence(frame.id) for frame in stream.frames]
    assert ids == sorted(set(ids)), "frames repeated or out of order"
    assert ids[0] > sequence(anchor), "a frame from before the Last-Event-ID"
    durable = [f for f in stream.frames if f.event in DURABLE and sequence(f.id) <= last]
    lost = {event["id"] for event in recorded} - {frame.id for frame in durable}
    unknown = {frame.id for frame in durable} - {event["id"] for event in recorded}
    assert not lost and not unknown, f"lost {sorted(lost)}; not in the history {sorted(unknown)}"
    assert as_recorded(durable) == recorded  # each the same name and data as recorded
    print(f"{len(recorded)} durable events, {len(stream.frames)} frames in all")
    assert len(recorded) >= 60
    assert gateway.count("stream.dropped") + gateway.count("stream.closed") == ended_before


def test_a_stuck_client_is_dropped_after_the_send_timeout_while_another_keeps_receiving(
    served: Served,
) -> None:
    gateway = served.gateway
    dropped_before = gateway.count("stream.dropped")
    normal = open_stream(served, "/events?topics=metrics,sessions")
    stuck: RawStream | None = None
    try:
        normal.read_until(lambda: normal.of("metrics"), 10, "a first metrics frame")
        stuck = open_stream(served, "/events?topics=metrics")  # and never read again
        opened = time.monotonic()
        normal.read_until(
            lambda: gateway.count("stream.dropped") > dropped_before,
            SEND_TIMEOUT + 30,
            "the stuck client to be dropped",
        )
        dropped_after = time.monotonic() - opened
        normal.read_until(
            lambda: [row["topics"] for row in served.streams()] == [["metrics", "sessions"]],
            10,
            "the stuck stream to leave /api/streams",
        )
        since = len(normal.frames)
        normal.read_until(lambda: len(normal.frames) >= since + 5, 10, "frames after the drop")
    finally:
        normal.close()
        if stuck is not None:
            stuck.close()
    print(f"dropped {dropped_after:.1f} s after it connected")
    assert dropped_after >= SEND_TIMEOUT
    dropped = [line for line in gateway.lines() if line["event"] == "stream.dropped"]
    assert [(line["level"], line["reason"]) for line in dropped[dropped_before:]] == [
        ("warning", "send_timeout")
    ]
    arrivals = [frame.arrived for frame in normal.frames if frame.arrived >= opened]
    gaps = [later - earlier for earlier, later in itertools.pairwise([opened, *arrivals])]
    assert max(gaps) < 2, f"the normal client waited {max(gaps):.1f} s for a frame"
