"""Hand-written hostile probes against a real gateway: paths, methods, cookies, CORS, huge
headers, slow clients, smuggling, bodies cut short or far too long.

Most of these found nothing when first tried; they stay so that nothing regresses. After each
probe the gateway's log must hold no error line, no traceback and no token
(tests/support/hostile.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.support.hostile import (
    ADMIN_TOKEN,
    ALLOWED_ORIGIN,
    SECRETS,
    VIEWER_TOKEN,
    RawResponse,
    Target,
    build_request,
    exchange,
    hostile_target,
    log_problems,
    read_response,
)

pytestmark = pytest.mark.fuzz
VIEWER = [(b"Authorization", b"Bearer " + VIEWER_TOKEN.encode())]
ADMIN = [(b"Authorization", b"Bearer " + ADMIN_TOKEN.encode())]
PROTECTED = (
    "/events",
    "/api/snapshot",
    "/api/streams",
    "/api/alerts",
    "/metrics",
    "/api/events",
    "/api/history",
    "/api/history/series",
    "/api/notifications",
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with hostile_target(tmp_path_factory.mktemp("hostile")) as target:
        yield target


@pytest.fixture(autouse=True)
def clean_log(target: Target) -> Iterator[None]:
    """Each probe leaves no error, traceback or token in the log (read after it, settled)."""
    target.log.new_problems()  # what an earlier probe left is that probe's failure
    yield
    target.settle()
    problems = target.log.new_problems()
    assert problems == [], "\n".join(f"{kind}: {what}" for kind, what in problems)


def assert_sound(response: RawResponse | None, *, json_errors: bool = True) -> None:
    """No 5xx, no token; a 4xx is the JSON error shape unless uvicorn refused to parse the
    bytes (or json_errors=False)."""
    if response is None:
        return
    assert response.status < 500, response.raw + response.body[:300]
    if json_errors and 400 <= response.status < 500 and not response.from_uvicorn and response.body:
        body = json.loads(response.body)
        assert isinstance(body["error"], str) and body["status"] == response.status
    for secret in SECRETS:
        assert secret not in response.raw + response.body


# Paths

PATH_TRICKS = (
    b"//api",
    b"//api/snapshot",
    b"/api//snapshot",
    b"/api/snapshot/",
    b"/api/./snapshot",
    b"/api/x/../snapshot",
    b"/%2e%2e/api/snapshot",
    b"/api%2fsnapshot",
    b"/api/%2e%2e/api/snapshot",
    b"/static/..%2f..%2fetc/passwd",
    b"/static/../../etc/passwd",
    b"/static/%2e%2e/%2e%2e/etc/passwd",
    b"/static/..%5c..%5cetc/passwd",
    b"/static/%2fetc/passwd",
    b"/static//etc/passwd",
    b"/static/style.css/",
    b"/static/",
    b"/events/",
    b"/" + b"a" * 8000,
    b"/api/" + b"x/" * 20000,
)


@pytest.mark.parametrize("path", PATH_TRICKS, ids=lambda p: p[:40].decode())
def test_path_tricks_without_a_token(target: Target, path: bytes) -> None:
    response = exchange(target.port, build_request(b"GET", path))
    assert_sound(response)
    assert response is not None
    assert b"root:" not in response.body, "a file outside static/ was served"
    if response.status == 200:  # only the open parts: the page, its files, the index
        assert not response.body.startswith(b'{"kato"'), f"{path!r} served the snapshot"
        assert response.header("content-type") != b"text/event-stream; charset=utf-8"


def test_a_redirect_keeps_the_token_and_the_host_out(target: Target) -> None:
    """GET /events/?token=... with a forged Host: no redirect to that host, none with the token."""
    request = build_request(
        b"GET", b"/events/?token=" + VIEWER_TOKEN.encode(), host=b"evil.example"
    )
    response = exchange(target.port, request)
    assert_sound(response)
    assert response is not None
    assert b"evil.example" not in (response.header("location") or b"")


# Methods


@pytest.mark.parametrize(
    "method", [b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"PATCH", b"TRACE", b"FOO", b"get"]
)
@pytest.mark.parametrize("path", [*PROTECTED, "/api/alerts/0123456789abcdef/ack"])
def test_odd_methods_on_protected_routes_without_a_token(
    target: Target, method: bytes, path: str
) -> None:
    response = exchange(target.port, build_request(method, path.encode()), head=method == b"HEAD")
    assert_sound(response)
    assert response is not None and not 200 <= response.status < 300, response.raw


# Cookies


def signed(key: str, role: str, expires: int, nonce: str = "0123456789abcdef") -> bytes:
    message = f"sse-monitor-session|{role}|{expires}|{nonce}".encode()
    signature = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
    return f"sse_monitor_session={role}.{expires}.{nonce}.{signature}".encode()


FORGED = {
    "expired": signed(ADMIN_TOKEN, "admin", int(time.time()) - 1),
    "admin signed by the viewer token": signed(VIEWER_TOKEN, "admin", int(time.time()) + 600),
    "viewer signed by the admin token": signed(ADMIN_TOKEN, "viewer", int(time.time()) + 600),
    "signed with a guess": signed("", "admin", int(time.time()) + 600),
    "signature cut short": signed(ADMIN_TOKEN, "admin", int(time.time()) + 600)[:-1],
    "expiry changed": signed(ADMIN_TOKEN, "admin", 10**10).replace(
        b".10000000000.", b".9999999999."
    ),
    "nonce changed": signed(ADMIN_TOKEN, "admin", 10**10).replace(b".0123", b".1123"),
    "no nonce (the shape before nonces)": b"sse_monitor_session=admin.9999999999." + b"0" * 64,
    "4301 digits": b"sse_monitor_session=admin." + b"9" * 4301 + b"." + b"0" * 64,
    "non-ASCII signature": "sse_monitor_session=admin.9999999999.é".encode(),
}


@pytest.mark.parametrize("cookie", FORGED.values(), ids=FORGED.keys())
def test_forged_cookies_grant_nothing(target: Target, cookie: bytes) -> None:
    for path in (b"/api/snapshot", b"/api/streams"):
        response = exchange(target.port, build_request(b"GET", path, [(b"Cookie", cookie)]))
        assert_sound(response)
        assert response is not None and response.status == 401


def test_a_fresh_admin_cookie_is_the_control(target: Target) -> None:
    """The forging above is done right: a cookie signed the gateway's way is let in."""
    cookie = signed(ADMIN_TOKEN, "admin", int(time.time()) + 600)
    response = exchange(target.port, build_request(b"GET", b"/api/streams", [(b"Cookie", cookie)]))
    assert response is not None and response.status == 200


# CORS (SSE_MONITOR_CORS_ORIGINS is ALLOWED_ORIGIN)

ODD_ORIGINS = (
    b"null",
    b"https://evil.example",
    b"https://user:pass@ops.allowed.example",
    ALLOWED_ORIGIN.encode() + b".evil.example",
    ALLOWED_ORIGIN.encode() + b"/",
    ALLOWED_ORIGIN.upper().encode(),
    ALLOWED_ORIGIN.replace("https", "http").encode(),
    b"*",
    b"https://ops.allowed.example\x00.evil.example",
)


@pytest.mark.parametrize("origin", ODD_ORIGINS, ids=lambda o: o.decode("latin-1"))
@pytest.mark.parametrize("path", [b"/events", b"/api/snapshot", b"/login"])
def test_cors_never_echoes_an_origin_not_allowed(
    target: Target, origin: bytes, path: bytes
) -> None:
    preflight = build_request(
        b"OPTIONS",
        path,
        [(b"Origin", origin), (b"Access-Control-Request-Method", b"GET")],
    )
    simple = build_request(b"GET", path, [(b"Origin", origin), *VIEWER])
    for request in (preflight, simple):
        response = exchange(target.port, request, head=path == b"/events")
        assert_sound(response, json_errors=False)  # the refused preflight: see below
        assert response is not None
        assert response.header("access-control-allow-origin") is None, response.raw


def test_a_refused_preflight_is_a_json_error(target: Target) -> None:
    """Starlette's CORSMiddleware refuses an origin in plain text; our errors are JSON."""
    request = build_request(
        b"OPTIONS",
        b"/api/snapshot",
        [(b"Origin", b"https://evil.example"), (b"Access-Control-Request-Method", b"GET")],
    )
    assert_sound(exchange(target.port, request))


def test_cors_allows_the_configured_origin(target: Target) -> None:
    """The control: the allowlisted origin is answered, so the refusals above mean something."""
    request = build_request(
        b"OPTIONS",
        b"/api/snapshot",
        [(b"Origin", ALLOWED_ORIGIN.encode()), (b"Access-Control-Request-Method", b"GET")],
    )
    response = exchange(target.port, request)
    assert response is not None and response.status == 200
    assert response.header("access-control-allow-origin") == ALLOWED_ORIGIN.encode()


# Big and many headers


@pytest.mark.parametrize(
    "headers",
    [
        [(b"X-Big", b"a" * 1_000_000)],
        [(b"Cookie", b"a=" + b"b" * 1_000_000)],
        [(f"X-{i}".encode(), b"v" * 100) for i in range(10_000)],
    ],
    ids=["one 1 MB header", "a 1 MB cookie", "10000 headers"],
)
def test_a_megabyte_of_headers(target: Target, headers: list[tuple[bytes, bytes]]) -> None:
    """A 4xx or a closed connection, never a 5xx; and others are still answered."""
    response = exchange(target.port, build_request(b"GET", b"/api/snapshot", [*VIEWER, *headers]))
    assert_sound(response)
    started = time.monotonic()
    assert target.send(build_request(b"GET", b"/healthz")).status == 200
    assert time.monotonic() - started < 2


def test_many_last_event_id_headers(target: Target) -> None:
    headers = [*VIEWER, *((b"Last-Event-ID", f"{i}:{i}".encode()) for i in range(500))]
    response = exchange(target.port, build_request(b"GET", b"/events", headers), head=True)
    assert_sound(response)
    assert response is not None and response.status in (200, 400)


# Slow clients


def open_connections(target: Target) -> int:
    assert target.gateway.proc is not None
    process = psutil.Process(target.gateway.proc.pid)
    return sum(
        1
        for c in process.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == target.port and c.status == psutil.CONN_ESTABLISHED
    )


@pytest.mark.timeout(60)
def test_slowloris_does_not_starve_other_clients(target: Target) -> None:
    """Thirty clients send their headers a byte a second. uvicorn has no header timeout
    (httptools and h11 alike: its only timer is the keep-alive one, which a trickle resets),
    so they are held as long as they trickle; what must hold is that everyone else is answered
    promptly and the gateway holds no more connections than were opened."""
    before = open_connections(target)
    slow = []
    for _ in range(30):
        sock = socket.create_connection(("127.0.0.1", target.port), timeout=5)
        sock.sendall(b"GET /api/snapshot HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    try:
        for second in range(5):
            deadline = time.monotonic() + 1
            for sock in slow:
                sock.sendall(b"X-Slow-%d: 1\r\n" % second)
            started = time.monotonic()
            answer = target.send(build_request(b"GET", b"/api/snapshot", VIEWER))
            assert answer.status == 200 and time.monotonic() - started < 1.0
            while time.monotonic() < deadline:  # the trickle's pace, not a wait for an event
                time.sleep(deadline - time.monotonic())
        assert open_connections(target) <= before + len(slow)
        for sock in slow:  # they finish at last, and are answered
            sock.sendall(b"Authorization: Bearer " + VIEWER_TOKEN.encode() + b"\r\n\r\n")
        assert all(read_response(sock).status == 200 for sock in slow)  # type: ignore[union-attr]
    finally:
        for sock in slow:
            sock.close()


def test_an_idle_connection_is_not_answered_but_others_are(target: Target) -> None:
    """A connection that sends half a request and stops: the gateway waits (no header
    timeout), and its neighbours are unaffected."""
    with socket.create_connection(("127.0.0.1", target.port), timeout=1) as idle:
        idle.sendall(b"GET /api/snapshot HTTP/1.1\r\n")
        with pytest.raises(TimeoutError):
            idle.recv(1)
        assert target.send(build_request(b"GET", b"/healthz")).status == 200


def stream_count(target: Target) -> int:
    return int(json.loads(target.send(build_request(b"GET", b"/api/streams", ADMIN)).body)["open"])


@pytest.mark.timeout(90)
def test_a_stream_with_a_request_pipelined_behind_it_ends_when_its_client_goes(
    target: Target,
) -> None:
    """A client sends GET /events and a second request in one packet, reads the stream's
    start, and closes. uvicorn queues the second request and stops reading, so it never sees
    the close, and it marks only the queued request disconnected: the stream must still end at
    its next writes (none of it on the publisher's path), and every other client go on."""
    before = stream_count(target)
    keep = [(b"Connection", b"keep-alive")]
    pipelined = build_request(b"GET", b"/events", VIEWER + keep) + build_request(
        b"GET", b"/healthz", keep
    )
    with socket.create_connection(("127.0.0.1", target.port), timeout=10) as sock:
        sock.sendall(pipelined)
        received = b""
        while b"event: metrics" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"the stream ended before its first metrics: {received[:500]!r}"
            received += chunk
        assert stream_count(target) == before + 1
    deadline = time.monotonic() + 60
    while stream_count(target) > before:  # ended at its next writes: a tick or two
        assert time.monotonic() < deadline, "the stream outlived its client"
        time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", target.port), timeout=10) as sock:
        sock.sendall(build_request(b"GET", b"/events?topics=metrics", VIEWER))
        received = b""
        while received.count(b"event: metrics") < 2:  # the first, then a tick's: still live
            chunk = sock.recv(65536)
            assert chunk, "the next stream ended"
            received += chunk


# Smuggling basics


def responses_on(port: int, request: bytes) -> list[bytes]:
    """Every status line the gateway writes back on one connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        sock.settimeout(1.5)  # kept alive, a connection ends when uvicorn's idle timer fires
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                data += chunk
    return [line for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


SMUGGLED = b"GET /api/streams HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\r\n"


@pytest.mark.parametrize(
    "framing",
    [
        [(b"Content-Length", b"4"), (b"Transfer-Encoding", b"chunked")],
        [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"4")],
        [(b"Content-Length", b"4"), (b"Content-Length", b"60")],
        [(b"Transfer-Encoding", b"chunked, identity")],
        [(b"Content-Length", b"+4")],
        [(b"Content-Length", b"4, 60")],
    ],
    ids=["CL+TE", "TE+CL", "two CLs", "TE list", "CL signed", "CL list"],
)
def test_request_smuggling_is_refused(target: Target, framing: list[tuple[bytes, bytes]]) -> None:
    """An ambiguous frame is refused, or read one way only: never a second, smuggled request."""
    body = b"0\r\n\r\n" + SMUGGLED
    request = build_request(
        b"POST",
        b"/logout",
        [(b"Connection", b"keep-alive"), *framing],
        body,
        content_length=False,
    )
    statuses = responses_on(target.port, request)
    assert len(statuses) <= 1, f"a smuggled request was answered: {statuses}"
    assert all(not s.startswith(b"HTTP/1.1 5") for s in statuses), statuses


# Bodies cut short, or far too long


@pytest.mark.parametrize("path", [b"/login", b"/api/alerts/{id}/ack"])
def test_a_client_leaving_mid_body_is_not_an_error(target: Target, path: bytes) -> None:
    """A client that goes away is not our error: nothing at error level, no traceback."""
    path = path.replace(b"{id}", target.alert_id.encode())
    headers = [*ADMIN, (b"Content-Type", b"application/json"), (b"Content-Length", b"100")]
    with socket.create_connection(("127.0.0.1", target.port), timeout=5) as sock:
        sock.sendall(build_request(b"POST", path, headers, b'{"by": "al', content_length=False))
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # until the gateway has closed its side
            pass
    # The handler may log after the close: give it a moment to (the check is negative).
    problems = target.log.problems_within(1.0)
    assert problems == [], problems


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("path", "cap"), [(b"/login", 4096), (b"/api/alerts/{id}/ack", 16384)])
def test_an_oversized_body_is_refused_before_it_is_all_sent(
    target: Target, path: bytes, cap: int
) -> None:
    """10 MB declared, a little over the cap sent: the answer (a 4xx) comes without the rest."""
    path = path.replace(b"{id}", target.alert_id.encode())
    headers = [*ADMIN, (b"Content-Type", b"application/json"), (b"Content-Length", b"10000000")]
    head = build_request(b"POST", path, headers, b"", content_length=False)
    with socket.create_connection(("127.0.0.1", target.port), timeout=5) as sock:
        sock.sendall(head + b'{"by":"' + b"a" * (cap + 1024))
        try:
            response = read_response(sock)
        except TimeoutError:
            pytest.fail(f"no answer to {path!r} within 5 s: it waits for the whole 10 MB body")
    assert response is not None and 400 <= response.status < 500
    assert_sound(response)


# Single cases the fuzz found, pinned so they stay found whatever the fuzz draws next

PINNED = {
    "before 0001-01-01 at +14:00": (
        b"GET",
        b"/api/alerts?before=0001-01-01T00:00:00%2B14:00",
        VIEWER,
        None,
    ),
    "before 9999-12-31 at -14:00": (
        b"GET",
        b"/api/alerts?before=9999-12-31T23:59:59-14:00",
        VIEWER,
        None,
    ),
    "lone surrogate token": (b"POST", b"/login", [], b'{"token": "\\ud800"}'),
    "raw surrogate bytes token": (b"POST", b"/login", [], b'{"token": "\xed\xa0\x80"}'),
    "lone surrogate by": (b"POST", b"/api/alerts/{id}/ack", ADMIN, b'{"by": "\\udfff"}'),
    "deep login body": (b"POST", b"/login", [], b"[" * 2000 + b"]" * 2000),
    "deep ack body": (b"POST", b"/api/alerts/{id}/ack", ADMIN, b"[" * 5000 + b"]" * 5000),
    "%74oken in the query": (b"GET", b"/api/snapshot?%74oken=" + VIEWER_TOKEN.encode(), [], None),
    ";token in the query": (b"GET", b"/api/snapshot?a=1;token=" + VIEWER_TOKEN.encode(), [], None),
    # The access line's scrubber once recursed per nested parameter: RecursionError in logging.
    "parameters nested 3000 deep": (b"GET", b"/api/snapshot?" + b"a=?" * 3000, VIEWER, None),
}


@pytest.mark.parametrize(("method", "path", "headers", "body"), PINNED.values(), ids=PINNED.keys())
def test_pinned_cases(
    target: Target,
    method: bytes,
    path: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
) -> None:
    """Each a 2xx or a JSON 4xx; the log check (clean_log) catches an error or a token."""
    path = path.replace(b"{id}", target.alert_id.encode())
    headers = [*headers, (b"Content-Type", b"application/json")] if body else headers
    response = exchange(target.port, build_request(method, path, headers, body))
    assert_sound(response)
    assert response is not None and response.status < 500


def test_the_whole_log_is_clean(target: Target) -> None:
    assert log_problems(target.gateway.log_path.read_bytes(), SECRETS) == []
